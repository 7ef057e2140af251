"""A backtest must never peek at tomorrow: cutting the data at day T changes nothing up to T."""

import pandas as pd
import pytest

from backtests.backtest import BacktestConfig, run_backtest
from marketdata import PriceData, load_sample
from strategies import StrategyParams

PARAMS = StrategyParams(top_n=2, lookback=10, history=50, refit_every=3, stop_loss=0.03)
SYMBOLS = ["AAPL", "AMD", "KO", "RRC"]


def test_trades_up_to_T_are_identical_with_and_without_the_future():
    data = load_sample().select(SYMBOLS)
    cut = pd.Timestamp("2022-11-15")
    full = run_backtest(data, PARAMS, BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight"))
    # the future is not just cut but replaced with wild prices: any peek would change the decisions
    closes = data.closes.copy()
    closes.loc[closes.index > cut] *= 5.0
    poisoned = PriceData.from_closes(closes, source="poisoned")
    cutrun = run_backtest(poisoned, PARAMS, BacktestConfig(start="2022-10-03", end="2022-12-28",
                                                           benchmark="equal-weight"))
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
def test_stop_loss_is_honoured(stop):
    data = load_sample().select(SYMBOLS)
    params = PARAMS.with_(stop_loss=stop, band=0.0)
    result = run_backtest(data, params, BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight"))
    stops = result.trades[result.trades["reason"] == "stop_loss"]
    assert len(stops) > 0
    closes = data.closes
    for t in stops.itertuples():
        buys = result.trades[(result.trades["symbol"] == t.symbol) & (result.trades["side"] == "buy")
                             & (result.trades["date"] <= t.decision_date)]
        entry = buys["price"].iloc[-1]
        assert closes.at[t.decision_date, t.symbol] <= entry * (1 - stop) + 1e-9
