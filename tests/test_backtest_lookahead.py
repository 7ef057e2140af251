"""A backtest must never peek at tomorrow: cutting the data at day T changes nothing up to T."""

import pandas as pd
import pytest

from backtests.backtest import BacktestConfig, run_backtest
from marketdata import PriceData, load_sample
from strategies import Rules, StrategyParams

PARAMS = StrategyParams(top_n=2, lookback=10, history=50, refit_every=3)
RULES = Rules(stop_loss=0.03)  # brackets too must not peek
SYMBOLS = ["AAPL", "AMD", "KO", "RRC"]


def test_trades_up_to_T_are_identical_with_and_without_the_future():
    data = load_sample().select(SYMBOLS)
    cut = pd.Timestamp("2022-11-15")
    full = run_backtest(data, PARAMS, BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight",
                                                      rules=RULES))
    # the future is not just cut but replaced with wild prices: any peek would change the decisions
    closes = data.closes.copy()
    closes.loc[closes.index > cut] *= 5.0
    poisoned = PriceData.from_closes(closes, source="poisoned")
    cutrun = run_backtest(poisoned, PARAMS, BacktestConfig(start="2022-10-03", end="2022-12-28",
                                                           benchmark="equal-weight", rules=RULES))
    key = ["decision_date", "symbol", "side", "qty"]
    before = full.trades[full.trades["date"] <= cut][key].reset_index(drop=True)
    assert len(before) >= 4
    pd.testing.assert_frame_equal(before, cutrun.trades[cutrun.trades["date"] <= cut][key].reset_index(drop=True))
    pd.testing.assert_series_equal(full.equity["equity"].loc[:cut], cutrun.equity["equity"].loc[:cut])
    # and the poisoned future does change what happens after T, so the comparison has teeth
    assert not full.equity["equity"].loc[cut:].equals(cutrun.equity["equity"].loc[cut:])


def test_no_trades_before_start():
    data = load_sample().select(SYMBOLS)
    result = run_backtest(data, PARAMS, BacktestConfig(start="2022-12-01", end="2022-12-28", benchmark="equal-weight"))
    assert (result.trades["decision_date"] >= pd.Timestamp("2022-12-01")).all()
    assert result.equity.index[0] == pd.Timestamp("2022-12-01")


@pytest.mark.parametrize("fill", ["decision", "next-bar"])
def test_closes_only_stops_trigger_on_the_first_close_through_the_stop_from_the_entry_fill(fill):
    """Closes only: the exit is checked on every close from the entry's fill on (an entry filled at the next
    close can already be below its stop); the exit sell fills as any market order of the model does (at that
    close by default, at the next close with next-bar fills), slipped."""
    stop = 0.01
    data = load_sample().select(SYMBOLS)
    params = PARAMS.with_(band=0.0)
    config = BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight", fill=fill,
                            rules=Rules(stop_loss=stop))
    result = run_backtest(data, params, config)
    trades = result.trades
    stops = trades[trades["reason"] == "stop_loss"]
    assert len(stops) > 0
    closes = data.closes
    slip = config.execution.costs.slip
    for i, t in zip(stops.index, stops.itertuples()):
        earlier = trades.loc[:i - 1]
        buy = earlier[(earlier["symbol"] == t.symbol) & (earlier["side"] == "buy")].iloc[-1]
        level = round(closes.at[buy["decision_date"], t.symbol] * (1 - stop), 2)  # the bracket's stop price
        watched = closes.loc[buy["date"]:t.decision_date, t.symbol]  # from the entry's fill (its bar's close) on
        assert watched.iloc[-1] <= level and (watched.iloc[:-1] > level).all()
        filled_on = t.decision_date if fill == "decision" else closes.index[closes.index.get_loc(t.decision_date) + 1]
        assert t.date == filled_on and t.price == pytest.approx(closes.at[filled_on, t.symbol] * (1 - slip))


def test_with_highs_and_lows_a_stop_fills_inside_the_bar_at_its_price_or_the_gapped_open(tmp_path):
    """OHLC data: the bracket's stop triggers on the bar's low and fills at the stop price (or at the open when the
    bar opens through it), not at the close; the same run on closes only exits at a later close."""
    import numpy as np

    from strategies.base import Strategy

    class BuyFirstDay(Strategy):
        name = "buy-first"
        warmup_bars = 1

        def decide(self, closes, positions, cash):
            return {"AAA": 0.5} if not positions and len(closes) and closes.index[-1] == closes.index[0] else (
                {s: p.qty * closes[s].iloc[-1] / (cash + p.qty * closes[s].iloc[-1]) for s, p in positions.items()})

    days = pd.bdate_range("2022-03-01", periods=12)
    close = np.full(12, 100.0)
    low = np.full(12, 99.5)
    open_ = np.full(12, 100.0)
    low[4] = 96.0            # day 4 dips through the 97.00 stop inside the bar and closes back at 100
    rows = [f"{d.date()},AAA,{o},{max(o, c) + 0.5},{lo},{c}" for d, o, lo, c in zip(days, open_, low, close)]
    path = tmp_path / "ohlc.csv"
    path.write_text("date,symbol,open,high,low,close\n" + "\n".join(rows) + "\n")
    from marketdata import load_csv

    data = load_csv(path)
    assert data.has_ranges
    config = BacktestConfig(start=str(days[1].date()), end=str(days[-1].date()), benchmark="equal-weight",
                            commission=0.0, slippage_bps=0.0,
                            rules=Rules(stop_loss=0.03, max_positions=None, max_order_notional=None))
    ohlc = run_backtest(data, BuyFirstDay(), config)
    stop = ohlc.trades[ohlc.trades["reason"] == "stop_loss"]
    assert len(stop) == 1 and stop["price"].iloc[0] == pytest.approx(97.0) and stop["date"].iloc[0] == days[4]
    # a gap: the bar opens below the stop, so the stop fills at that open
    open_[4], low[4] = 95.0, 94.0
    rows = [f"{d.date()},AAA,{o},{max(o, c) + 0.5},{lo},{c}" for d, o, lo, c in zip(days, open_, low, close)]
    path.write_text("date,symbol,open,high,low,close\n" + "\n".join(rows) + "\n")
    gapped = run_backtest(load_csv(path), BuyFirstDay(), config)
    stop = gapped.trades[gapped.trades["reason"] == "stop_loss"]
    assert len(stop) == 1 and stop["price"].iloc[0] == pytest.approx(95.0)
    # closes only: the close never crosses 97, so no stop at all
    closes_only = run_backtest(PriceData.from_closes(data.closes, source="closes"), BuyFirstDay(), config)
    assert (closes_only.trades["reason"] != "stop_loss").all()


class _BuyOnce:
    """A strategy that buys half its cash of AAA at its first decision and holds it."""

    @staticmethod
    def make():
        from strategies.base import Strategy

        class BuyOnce(Strategy):
            name = "buy-once"
            warmup_bars = 1

            def decide(self, closes, positions, cash):
                if positions:
                    s, p = next(iter(positions.items()))
                    return {s: p.qty * closes[s].iloc[-1] / (cash + p.qty * closes[s].iloc[-1])}
                return {"AAA": 0.5} if len(closes) and closes.index[-1] == closes.index[0] else {}

        return BuyOnce()


def _ohlc(tmp_path, low_on: dict[int, float]):
    import numpy as np

    from marketdata import load_csv

    days = pd.bdate_range("2022-03-01", periods=8)
    low = np.full(8, 99.5)
    for i, v in low_on.items():
        low[i] = v
    rows = [f"{d.date()},AAA,100.0,100.5,{lo},100.0" for d, lo in zip(days, low)]
    path = tmp_path / "ohlc.csv"
    path.write_text("date,symbol,open,high,low,close\n" + "\n".join(rows) + "\n")
    return days, load_csv(path)


def test_a_stop_is_armed_from_the_entry_fill_so_the_entry_bars_own_low_triggers_it(tmp_path):
    """next-bar fills: the entry fills at day 2's open and day 2's own low (96) goes through the 97 stop, as a
    broker bracket would be stopped within the bar it filled in (Backtrader arms the legs a bar later)."""
    days, data = _ohlc(tmp_path, {2: 96.0})
    config = BacktestConfig(start=str(days[1].date()), end=str(days[-1].date()), benchmark="equal-weight",
                            fill="next-bar", slippage_bps=0.0,
                            rules=Rules(stop_loss=0.03, max_positions=None, max_order_notional=None))
    trades = run_backtest(data, _BuyOnce.make(), config).trades
    buy, stop = trades[trades["side"] == "buy"].iloc[0], trades[trades["reason"] == "stop_loss"]
    assert buy["date"] == days[2] and buy["price"] == 100.0
    assert len(stop) == 1 and stop["date"].iloc[0] == days[2] and stop["price"].iloc[0] == pytest.approx(97.0)


def test_an_entry_at_the_close_is_not_stopped_by_its_own_bars_earlier_low_but_by_the_next_bars(tmp_path):
    """Decision-moment fills on daily bars: the entry fills at day 1's close, after day 1's low (96) happened,
    so that low cannot stop it; day 2's low can, and does, within day 2."""
    days, data = _ohlc(tmp_path, {1: 96.0})
    config = BacktestConfig(start=str(days[1].date()), end=str(days[-1].date()), benchmark="equal-weight",
                            slippage_bps=0.0, rules=Rules(stop_loss=0.03, max_positions=None, max_order_notional=None))
    trades = run_backtest(data, _BuyOnce.make(), config).trades
    assert trades["date"].iloc[0] == days[1] and (trades["reason"] != "stop_loss").all()
    days, data = _ohlc(tmp_path, {1: 96.0, 2: 96.5})
    trades = run_backtest(data, _BuyOnce.make(), config).trades
    stop = trades[trades["reason"] == "stop_loss"]
    assert len(stop) == 1 and stop["date"].iloc[0] == days[2] and stop["price"].iloc[0] == pytest.approx(97.0)
