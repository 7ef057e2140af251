"""The 15-minute cadence in both homes, on SYNTHETIC intraday bars (a seeded random walk on the XNYS sessions,
made here; never presented as market data).

Parity: every slot of 5 trading days (Memorial Day inside) replayed through ``live.cycle.run`` on the cycle's
own paper broker, which fills at the open of the bar at the slot as the backtest does, makes exactly the intraday
backtest's (slot, symbol, side) (in money: tests/test_live_parity.py). Look-ahead: bars after slot T multiplied by 5 leave every decision up to T identical, in
the backtest and in a live cycle at T.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import live.cycle
from _live_env import live_env
from backtests.backtest import BacktestConfig, decision_bars, run_backtest
from deploy.schedule import schedules_for
from live.cycle import run
from live.orders import client_order_id, is_ours
from marketdata.bars import session_hours
from marketdata.prices import PriceData
from marketdata.provider import FrameProvider
from strategies import ProphetTrend
from strategies.cadence import Cadence
from strategies.params import StrategyParams

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
FIRST, LAST = dt.date(2022, 5, 24), dt.date(2022, 5, 31)  # 5 sessions: 24, 25, 26, 27 and 31 (30th: holiday)
PARAMS = dict(bar="15m", top_n=3, lookback=10, history=60, horizon=2, refit_every=4, band=0.002)
ENV = {"CADENCE": "15min", "STRATEGY_BAR": "15m", "STRATEGY_TOP_N": "3", "STRATEGY_LOOKBACK": "10",
       "STRATEGY_HISTORY": "60", "STRATEGY_HORIZON": "2", "STRATEGY_REFIT_EVERY": "4", "STRATEGY_BAND": "0.002",
       "UNIVERSE": ",".join(SYMBOLS)}


def synthetic_bars(first=dt.date(2022, 5, 2), last=dt.date(2022, 6, 3), minutes=15, seed=7) -> PriceData:
    """SYNTHETIC 15-minute bars on the real XNYS sessions (a drifting, oscillating random walk per symbol)."""
    hours = session_hours(first, last)
    stamps = pd.DatetimeIndex(np.concatenate([pd.date_range(o, c, freq=f"{minutes}min", inclusive="left").values
                                              for o, c in zip(hours["open"], hours["close"])]))
    rng = np.random.default_rng(seed)
    n = len(stamps)
    closes, opens = {}, {}
    for k, symbol in enumerate(SYMBOLS):
        close = (50 + 10 * k) * np.exp(np.cumsum(rng.normal(0.0002 * (k - 2), 0.004, n))
                                       + 0.03 * np.sin(np.arange(n) / 9.0 + k))
        closes[symbol] = close
        opens[symbol] = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.001, n))
    return PriceData.from_closes(pd.DataFrame(closes, index=stamps), opens=pd.DataFrame(opens, index=stamps),
                                 source="synthetic (tests/test_intraday_cadence.py)", interval=f"{minutes}m")


@pytest.fixture()
def intraday_home(monkeypatch):
    """Route the live cycle to a FrameProvider of the synthetic bars; return a setter for the data. The paper
    broker is the cycle's own (``make_broker``): it prices the slot from the same 15-minute bars."""
    state = {"data": synthetic_bars()}

    def provider(_config):
        return FrameProvider(state["data"], name="synthetic")

    monkeypatch.setattr(live.cycle, "make_provider", provider)
    return state


def _slots(first=FIRST, last=LAST) -> list[pd.Timestamp]:
    hours = session_hours(first, last)
    cadence = Cadence.parse("15min")
    return [pd.Timestamp(s) for o, c in zip(hours["open"], hours["close"])
            for s in cadence.slots(pd.Timestamp(o).to_pydatetime(), pd.Timestamp(c).to_pydatetime())]


def _backtest(data, end=LAST, **changes):
    return run_backtest(data, ProphetTrend(**{**PARAMS, **changes}),
                        BacktestConfig(start=str(FIRST), end=str(end), cash=100_000.0, commission=0.0,
                                       benchmark="equal-weight"),
                        cadence=Cadence.parse("15min"))


def _at(slot: pd.Timestamp) -> str:
    return slot.tz_localize("America/New_York").isoformat()


def test_cadence_parses_every_n_minutes_and_refuses_one_that_does_not_divide_the_session():
    for text in ("15min", "15m", "every 15 minutes", "15 minutes"):
        assert Cadence.parse(text).minutes == 15
    assert Cadence.parse("30min").kind == "30min" and Cadence.parse("1min").intraday
    for bad in ("7min", "60min", "1h", "0min"):
        with pytest.raises(ValueError, match="does not divide the 390-minute session"):
            Cadence.parse(bad)


def test_slots_run_from_0945_to_1545_and_follow_early_closes_and_holidays():
    slots = _slots(dt.date(2022, 11, 23), dt.date(2022, 11, 28))  # Thanksgiving closed, Black Friday 13:00
    by_day: dict[dt.date, list[str]] = {}
    for s in slots:
        by_day.setdefault(s.date(), []).append(s.strftime("%H:%M"))
    assert sorted(by_day) == [dt.date(2022, 11, 23), dt.date(2022, 11, 25), dt.date(2022, 11, 28)]
    assert by_day[dt.date(2022, 11, 23)][0] == "09:45" and by_day[dt.date(2022, 11, 23)][-1] == "15:45"
    assert len(by_day[dt.date(2022, 11, 23)]) == 25
    assert by_day[dt.date(2022, 11, 25)][-1] == "12:45" and len(by_day[dt.date(2022, 11, 25)]) == 13
    # the backtest decides on the bars that complete at those slots, in the same sessions
    stamps = synthetic_bars(dt.date(2022, 11, 23), dt.date(2022, 11, 28)).closes.index
    assert sorted(b + pd.Timedelta(minutes=15) for b in decision_bars(stamps, "15m", Cadence.parse("15min"))) == slots
    # deploy schedules exactly those slots (a normal day's; the early close's are a subset)
    assert schedules_for(Cadence.parse("15min")) == ("cron(45 9 ? * MON-FRI *)", "cron(0,15,30,45 10-15 ? * MON-FRI *)")
    assert schedules_for(Cadence.parse("30min")) == ("cron(45 9 ? * MON-FRI *)", "cron(15,45 10-15 ? * MON-FRI *)")


def test_order_ids_are_keyed_by_slot_and_recognised():
    a = client_order_id("prophet-trend", dt.date(2022, 6, 1), "AAPL", "buy", slot=39)
    b = client_order_id("prophet-trend", dt.date(2022, 6, 1), "AAPL", "buy", slot=40)
    assert a != b and is_ours("prophet-trend", a)
    five = client_order_id("prophet-trend", dt.date(2022, 6, 1), "AAPL", "buy",
                           slot=Cadence.parse("5min").slot_number(dt.datetime(2022, 6, 1, 15, 50)))
    assert "s190" in five and is_ours("prophet-trend", five)


@pytest.mark.parametrize("model", ["session", "clock"])
def test_every_slot_of_five_days_trades_alike_in_both_homes(tmp_path, intraday_home, model):
    """Both intraday models: `clock` (daily seasonality) has a multi-modal posterior, so its fits start cold in
    both homes; before that, warm starts in the backtest settled elsewhere and a few slots differed."""
    slots = _slots()
    assert len({s.date() for s in slots}) == 5 and len(slots) == 125
    env = live_env(tmp_path, **ENV, STRATEGY_INTRADAY_MODEL=model)
    live_set = set()
    for slot in slots:
        summary = run({"now": _at(slot)}, env=env)
        assert summary["status"] in ("traded", "no_change"), summary
        assert summary["decision"]["due"], summary
        live_set |= {(slot, o["symbol"], o["side"]) for o in summary["orders"] if o["new"]}
        assert all(f"s{slot.hour * 4 + slot.minute // 15:02d}-" in o["client_order_id"] for o in summary["orders"])
    result = _backtest(intraday_home["data"], intraday_model=model)
    assert result.rejected.empty and result.summary["slots"] == 125
    backtest = {(pd.Timestamp(d), s, side) for d, s, side in
                zip(result.trades["decision_date"], result.trades["symbol"], result.trades["side"])}
    assert len(backtest) >= 20 and {side for *_, side in backtest} == {"buy", "sell"}
    assert {s.date() for s, *_ in backtest} == {s.date() for s in slots}, "trades should happen on every day"
    assert live_set == backtest
    # a second cycle inside a decided slot only reconciles: its mark is per slot, not per day
    again = run({"now": _at(slots[3] + pd.Timedelta(minutes=7))}, env=env)
    assert again["status"] == "no_change" and "already" in again["reason"] and not again["orders"]


def test_bars_after_a_slot_multiplied_by_5_leave_every_decision_up_to_it_identical(tmp_path, intraday_home):
    data = intraday_home["data"]
    slot = pd.Timestamp("2022-05-26 11:45")
    later = pd.Series(data.closes.index >= slot, index=data.closes.index)  # bars not complete at the slot
    scaled = PriceData.from_closes(data.closes.mul(np.where(later, 5.0, 1.0), axis=0),
                                   opens=data.opens.mul(np.where(later, 5.0, 1.0), axis=0), source="synthetic x5",
                                   interval="15m")
    assert later.any() and (scaled.closes[later] == data.closes[later] * 5).all().all()
    base, bumped = _backtest(data, end=dt.date(2022, 5, 27)), _backtest(scaled, end=dt.date(2022, 5, 27))

    def decided(result):  # orders decided up to the slot, filled or not (a 5x open may refuse the slot's buy)
        cols = ["decision_date", "symbol", "side", "qty"]
        rows = [(pd.Timestamp(d), str(s), str(side), int(q)) for frame in (result.trades, result.rejected)
                for d, s, side, q in frame[cols].itertuples(index=False)]
        return sorted(r for r in rows if r[0] <= slot)

    def forecasts(result):
        f = result.forecasts
        return f[pd.to_datetime(f["date"]) < slot].reset_index(drop=True)

    assert len(decided(base)) >= 5
    assert decided(base) == decided(bumped)
    pd.testing.assert_frame_equal(forecasts(base), forecasts(bumped))
    assert len(base.trades) > len(decided(base)), "decisions after the slot should exist (and may differ)"
    # the live cycle at that slot decides on the same bars, whatever comes after
    summaries = []
    for name, frame in (("base", data), ("bumped", scaled)):
        intraday_home["data"] = frame
        s = run({"now": _at(slot), "dry_run": True}, env=live_env(tmp_path / name, **ENV))
        summaries.append((s["signals"], [(o["symbol"], o["side"], o["qty"]) for o in s["orders"]]))
    assert summaries[0] == summaries[1] and summaries[0][0]


def test_the_seeds_variant_is_a_config_and_the_exact_engine_serves_both_intraday_models():
    seed = StrategyParams(bar="1m", today_only=True, history=390, horizon=15, refit_every=1, lookback=15)
    data = synthetic_bars(dt.date(2022, 5, 31), dt.date(2022, 6, 1), minutes=1)
    closes = data.closes.loc[:"2022-06-01 10:29"]
    strategy = ProphetTrend(seed)
    decision = strategy.decide(closes, {}, 10_000.0)
    points = decision.forecasts
    assert points and all(p.anchor == closes.index[-1] for p in points.values())
    assert all(p.target == closes.index[-1] + pd.Timedelta(minutes=15) for p in points.values())
    assert strategy.forecaster.fallbacks == 0
    for model in ("session", "clock"):
        s = ProphetTrend(bar="15m", history=60, horizon=2, refit_every=1, lookback=10, intraday_model=model)
        d = s.decide(synthetic_bars().closes.loc[:"2022-05-20 12:00"], {}, 10_000.0)
        assert d.forecasts and s.forecaster.fallbacks == 0, model


def test_bad_cadence_and_bar_flags_are_one_line_errors(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for args in (["--cadence", "7min"], ["--cadence", "15min"], ["--bar", "2h"], ["--bar", "15m"]):
        done = subprocess.run([sys.executable, "-m", "backtests.run", *args, "--quiet", "--no-plot", "--out",
                               str(tmp_path / "out")], cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_an_intraday_backtests_own_summary_counts_every_session_from_the_starting_cash():
    """The in-memory summary (what sweeps read) agrees with the equity curve: the first session counts too."""
    from backtests import metrics

    result = _backtest(synthetic_bars())
    equity = result.equity["equity"]
    assert result.summary["total_return"] == pytest.approx(equity.iloc[-1] / equity.iloc[0] - 1, abs=1e-12)
    sessions = metrics.session_equity(equity)
    assert sessions.iloc[0] == equity.iloc[0] and len(sessions) == equity.index.normalize().nunique() + 1
    assert result.summary["sharpe"] == pytest.approx(metrics.performance(sessions)["sharpe"], abs=1e-12)
