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


@pytest.mark.parametrize("stop", [0.01])
def test_stop_loss_exits_trigger_on_the_first_close_through_the_stop_and_fill_at_the_next(stop):
    data = load_sample().select(SYMBOLS)
    params = PARAMS.with_(band=0.0)
    result = run_backtest(data, params, BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight",
                                                       rules=Rules(stop_loss=stop)))
    trades = result.trades
    stops = trades[trades["reason"] == "stop_loss"]
    assert len(stops) > 0
    closes = data.closes
    for t in stops.itertuples():
        buy = trades[(trades["symbol"] == t.symbol) & (trades["side"] == "buy") & (trades["date"] <= t.decision_date)].iloc[-1]
        level = round(closes.at[buy["decision_date"], t.symbol] * (1 - stop), 2)  # the bracket's stop price
        watched = closes.loc[buy["date"]:t.decision_date, t.symbol]  # from the entry's fill bar to the trigger
        assert watched.iloc[-1] <= level and (watched.iloc[:-1] > level).all()
        assert t.date > t.decision_date and t.price == pytest.approx(closes.at[t.date, t.symbol])  # the next close
