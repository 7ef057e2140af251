"""One Strategy interface and one rulebook, run by both homes.

Parity: replaying each day's cycle through the live cycle at the decision time on the paper broker makes exactly
the backtest's (decision date, symbol, side), for ProphetTrend with limits and a stop-loss on and for the shipped
moving-average crossover; a user's strategy in a folder outside the package runs in the backtest, the live replay
and the built function zip; a run's config.toml reproduces it byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from _live_env import SYMBOLS, live_env
from backtests.backtest import BacktestConfig, run_backtest
from brokers.calendar import MarketCalendar
from brokers.paper import PaperBroker
from live.config import LiveConfig
from live.cycle import run
from marketdata import load_sample
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parent.parent
FIRST, LAST = dt.date(2022, 5, 2), dt.date(2022, 6, 15)  # 32 sessions, Memorial Day inside


def _replay(env, days):
    """Run the cycle at 15:45 on each day; (day, symbol, side) of every fill the strategy caused."""
    for day in days:
        summary = run({"now": f"{day}T15:45:00-04:00"}, env=env)
        assert summary["status"] in ("traded", "no_change"), summary
        assert summary["decision"]["due"], summary
    broker = PaperBroker(Path(env["STATE_DIR"]) / "paper.sqlite", SampleProvider())
    fills = set()
    for order in broker.orders():
        if order.status == "filled":
            day = order.submitted_at.astimezone(dt.timezone.utc).date() if order.order_type == "market" else None
            fills.add((day, order.symbol, order.side, order.order_type))
    return fills, broker


def _fill_days(broker):
    """(fill date, symbol, side, reason) of every filled order, legs at the day they filled."""
    import sqlite3

    db = sqlite3.connect(broker.path)
    rows = db.execute("SELECT symbol, side, order_type, filled_at FROM orders WHERE status = 'filled'").fetchall()
    out = set()
    for symbol, side, kind, filled_at in rows:
        day = dt.datetime.fromisoformat(filled_at).astimezone(dt.timezone(dt.timedelta(hours=-4))).date()
        out.add((day, symbol, side, {"stop": "stop_loss", "limit": "take_profit"}.get(kind, "decision")))
    return out


def _backtest_set(params, rules, strategy=None):
    end = MarketCalendar().sessions(LAST + dt.timedelta(days=1), LAST + dt.timedelta(days=7))[0].date
    result = run_backtest(load_sample().select(SYMBOLS), strategy or params,
                          BacktestConfig(start=str(FIRST), end=str(end), cash=100_000.0, commission=0.0,
                                         benchmark="equal-weight", rules=rules))
    assert result.rejected.empty
    t = result.trades
    kind = t["reason"].where(t["reason"].isin(["stop_loss", "take_profit"]), "decision")
    return {(pd.Timestamp(d).date(), s, side, k) for d, s, side, k in zip(t["decision_date"], t["symbol"], t["side"], kind)
            if pd.Timestamp(d).date() <= LAST}


def test_prophet_trend_with_limits_and_a_stop_loss_trades_alike_in_both_homes(tmp_path):
    env = live_env(tmp_path, MAX_POSITIONS="2", MAX_ORDER_NOTIONAL="30000", STOP_LOSS="0.02",
                   STRATEGY_BAND="0.005")
    config = LiveConfig.from_env(env)
    days = [s.date for s in MarketCalendar().sessions(FIRST, LAST)]
    assert len(days) >= 20
    _, broker = _replay(env, days)
    live = {(d, s, side, k) for d, s, side, k in _fill_days(broker) if d <= LAST}
    backtest = _backtest_set(config.params, config.rules)
    assert {k for *_, k in backtest} >= {"decision", "stop_loss"}, "the window should trigger stops"
    assert {side for _, _, side, _ in backtest} == {"buy", "sell"}
    assert max(sum(1 for d2, s, side, _ in backtest if side == "buy" and d2 <= d) -
               sum(1 for d2, s, side, _ in backtest if side == "sell" and d2 <= d) for d in days) <= 2
    assert live == backtest


def test_the_moving_average_crossover_trades_alike_in_both_homes(tmp_path):
    env = live_env(tmp_path, STRATEGY="ma-crossover", STRATEGY_FAST="5", STRATEGY_SLOW="20", STRATEGY_MAX_NAMES="2",
                   STRATEGY_TOP_N="", STRATEGY_LOOKBACK="", STRATEGY_HISTORY="", STRATEGY_REFIT_EVERY="")
    config = LiveConfig.from_env(env)
    days = [s.date for s in MarketCalendar().sessions(FIRST, LAST)]
    _, broker = _replay(env, days)
    live = {(d, s, side, k) for d, s, side, k in _fill_days(broker) if d <= LAST}
    backtest = _backtest_set(None, config.rules, strategy=config.build_strategy())
    assert len(backtest) >= 4 and {side for _, _, side, _ in backtest} == {"buy", "sell"}
    assert live == backtest


def test_daily_cadence_trades_once_at_the_decision_time(tmp_path):
    env = live_env(tmp_path)
    early = run({"now": "2022-06-01T10:15:00-04:00"}, env=env)
    assert early["status"] == "no_change" and not early["decision"]["due"] and early["orders"] == []
    at = run({"now": "2022-06-01T15:45:00-04:00"}, env=env)
    assert at["status"] == "traded" and at["orders"]
    late = run({"now": "2022-06-01T15:52:00-04:00"}, env=env)
    assert late["status"] == "no_change" and "already" in late["reason"] and late["orders"] == []
    assert len(PaperBroker(tmp_path / "paper.sqlite", SampleProvider()).orders()) == len(at["orders"])
    # a late first cycle (a delayed start) still makes the day's single decision
    other = live_env(tmp_path / "late")
    assert run({"now": "2022-06-01T15:52:00-04:00"}, env=other)["status"] == "traded"
    # an early-close day decides 15 minutes before its 13:00 close, as the backtest decides on every session
    half = run({"now": "2022-11-25T12:45:00-05:00"}, env=live_env(tmp_path / "half"))
    assert half["decision"]["due"] and half["status"] in ("traded", "no_change")


USER_STRATEGY = textwrap.dedent('''
    from dataclasses import dataclass
    from strategies import Strategy

    @dataclass(frozen=True)
    class Params:
        names: int = 2

    class TopTwo(Strategy):
        """Holds the two symbols with the best 5-bar return, in equal weights."""
        name = "top-two"
        warmup_bars = 6
        Params = Params

        def decide(self, closes, positions, cash):
            ret = (closes.iloc[-1] / closes.iloc[-6] - 1).dropna().sort_values(ascending=False)
            return {s: 0.45 for s in ret.index[: self.params.names]}
''')


@pytest.fixture()
def user_file(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    path = folder / "top_two.py"
    path.write_text(USER_STRATEGY)
    return path


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "backtests.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_user_strategy_outside_the_package_runs_in_backtest_and_live_replay(tmp_path, user_file):
    done = _cli("--strategy", f"{user_file}:TopTwo", "--symbols", ",".join(SYMBOLS), "--start", "2022-05-02",
                "--end", "2022-06-15", "--out", str(tmp_path / "run"), "--quiet", "--no-plot")
    assert done.returncode == 0, done.stderr
    trades = pd.read_csv(tmp_path / "run" / "trades.csv")
    assert len(trades) > 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["strategy"]["name"] == "top-two"
    env = live_env(tmp_path / "live", STRATEGY=f"{user_file}:TopTwo", STRATEGY_TOP_N="", STRATEGY_LOOKBACK="",
                   STRATEGY_HISTORY="", STRATEGY_REFIT_EVERY="")
    summary = run({"now": "2022-06-01T15:45:00-04:00"}, env=env)
    assert summary["status"] == "traded" and summary["strategy"] == "top-two"
    assert {o["client_order_id"].split("-2022")[0] for o in summary["orders"]} == {"top-two"}


def test_a_runs_config_reproduces_it_byte_for_byte(tmp_path):
    first = _cli("--symbols", "AAPL,KO,PG,XOM", "--start", "2022-09-01", "--end", "2022-12-28", "--top-n", "2",
                 "--history", "60", "--max-positions", "1", "--stop-loss", "0.03", "--out", str(tmp_path / "a"),
                 "--quiet", "--no-plot")
    assert first.returncode == 0, first.stderr
    again = _cli("--config", str(tmp_path / "a" / "config.toml"), "--out", str(tmp_path / "b"), "--quiet", "--no-plot",
                 cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a" / "trades.csv").read_bytes() == (tmp_path / "b" / "trades.csv").read_bytes()
    assert (tmp_path / "a" / "config.toml").read_text() == (tmp_path / "b" / "config.toml").read_text()
    assert len(pd.read_csv(tmp_path / "a" / "trades.csv")) > 2


BAD = {
    "raises": "raise RuntimeError('model blew up')",
    "negative": "return {closes.columns[0]: -0.5}",
    "nan": "return {closes.columns[0]: float('nan')}",
    "unknown": "return {'NOSUCH': 0.1}",
    "over": "return {s: 0.6 for s in closes.columns[:2]}",
    "junk": "return 'buy everything'",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_decide_that_raises_or_returns_junk_trades_nothing(tmp_path, kind):
    path = tmp_path / "bad.py"
    path.write_text("from strategies import Strategy\n\nclass Bad(Strategy):\n    name = 'bad'\n    warmup_bars = 2\n"
                    f"    def decide(self, closes, positions, cash):\n        {BAD[kind]}\n")
    env = live_env(tmp_path / "live", STRATEGY=f"{path}:Bad", STRATEGY_TOP_N="", STRATEGY_LOOKBACK="",
                   STRATEGY_HISTORY="", STRATEGY_REFIT_EVERY="")
    summary = run({"now": "2022-06-01T15:45:00-04:00"}, env=env)
    assert summary["status"] == "error" and summary["orders"] == []
    journal = [json.loads(line) for line in (tmp_path / "live" / "journal.jsonl").read_text().splitlines()]
    assert journal[-1]["status"] == "error"
    assert PaperBroker(tmp_path / "live" / "paper.sqlite", SampleProvider()).orders() == []
    if kind != "raises":
        assert summary["error"]["type"] == "strategy" and "strategy 'bad' returned" in summary["error"]["message"]


def test_bad_strategy_input_is_one_line_and_exit_2(tmp_path, user_file):
    (tmp_path / "notastrategy.py").write_text("class X:\n    pass\n")
    cases = [["--strategy", "nope"], ["--strategy", str(tmp_path / "missing.py") + ":X"],
             ["--strategy", str(tmp_path / "notastrategy.py") + ":X"], ["--param", "nosuch=1"],
             ["--strategy", f"{user_file}:TopTwo", "--param", "names=two"], ["--config", str(tmp_path / "none.toml")]]
    (tmp_path / "bad.toml").write_text('strategy = "prophet-trend"\ncolour = "red"\n')
    cases.append(["--config", str(tmp_path / "bad.toml")])
    for case in cases:
        done = _cli(*case, "--quiet", "--no-plot", "--out", str(tmp_path / "out"))
        assert done.returncode == 2, (case, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists()
