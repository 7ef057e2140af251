"""Feeds only for the names a decision can rank: the pruned path trades exactly as the full one.

ProphetTrend ranks its whole history before the loop (``Strategy.candidate_mask``); the backtest then gives
Backtrader feeds only to the names some bar marks and hands ``decide`` only that bar's marked names plus the
holdings. ``Full`` is the same strategy without the hook (a strategy that makes no promise), so it runs the full
path: every symbol a feed, every column at every bar. The 503 names are SYNTHETIC (benchmarks/_synthetic.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtests.backtest import BacktestConfig, feed_plan, run_backtest, window_for
from benchmarks._synthetic import daily_frame
from marketdata import load_sample, load_sample_index
from marketdata.prices import PriceData
from strategies import ProphetTrend
from strategies.base import StrategyError
from strategies.rules import Rules
from strategies.universe import top_n_by_momentum


class Full(ProphetTrend):
    """ProphetTrend without the hook: the backtest's full path."""

    def candidate_mask(self, closes):
        return None


class Watched(ProphetTrend):
    """ProphetTrend that records how many columns each decision was handed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.widths: list[int] = []

    def decide(self, closes, positions, cash):
        self.widths.append(closes.shape[1])
        return super().decide(closes, positions, cash)

    def candidate_mask(self, closes):  # the same decision, so the same promise (an override of decide alone
        return super().candidate_mask(closes)  # would get the full path)


def test_a_subclass_that_decides_differently_but_inherits_the_mask_gets_the_full_path():
    class OwnDecide(ProphetTrend):
        def decide(self, closes, positions, cash):
            return super().decide(closes, positions, cash)

    data = load_sample().select(["AAPL", "MSFT", "KO", "XOM"])
    config = BacktestConfig(start="2022-11-01", end="2022-12-28")
    window = window_for(data, OwnDecide(top_n=1, history=60), config)
    feeds, rows = feed_plan(window, OwnDecide(top_n=1, history=60), window.closes.index >= config.start_ts)
    assert feeds == data.symbols and rows is None


def _same(pruned, full):
    assert len(full.trades) > 10  # a run that trades
    for part in ("trades", "equity", "forecasts", "skipped", "rejected"):
        pd.testing.assert_frame_equal(getattr(pruned, part), getattr(full, part), check_exact=True, obj=part)


def test_bundled_data_trades_the_same_pruned_and_full_with_stops_and_limits():
    data, index = load_sample(), load_sample_index()
    params = dict(top_n=3, lookback=20, history=60, refit_every=5)
    config = BacktestConfig(start="2022-06-01", end="2022-12-28",
                            rules=Rules(max_positions=4, stop_loss=0.03, take_profit=0.05))
    watched = Watched(**params)
    pruned = run_backtest(data, watched, config, index=index)
    full = run_backtest(data, Full(**params), config, index=index)
    _same(pruned, full)
    assert set(pruned.trades["reason"]) >= {"stop_loss"}  # exits ran too
    assert max(watched.widths) <= 3 + 4 < len(data.symbols)  # top 3 plus at most 4 holdings per decision


def test_503_synthetic_names_trade_the_same_and_each_decision_sees_only_its_candidates():
    frame = daily_frame(503, "2021-06-01", "2022-03-31", missing=0.002)
    data = PriceData.from_closes(frame, source="synthetic (benchmarks/_synthetic.py)")
    params = dict(top_n=5, lookback=20, history=40, refit_every=10)
    config = BacktestConfig(start="2022-01-03", end="2022-03-31", benchmark="equal-weight",
                            rules=Rules(max_positions=6))
    watched = Watched(**params)
    pruned = run_backtest(data, watched, config)
    full = run_backtest(data, Full(**params), config)
    _same(pruned, full)
    assert pruned.equity["equity"].notna().all()  # a missing close of a name never traded is no NaN equity
    # the work per bar follows the names that can trade: top 5 plus at most 6 holdings, not 503 columns
    assert watched.widths and max(watched.widths) <= 5 + 6
    window = window_for(data, watched, config)
    feeds, rows = feed_plan(window, watched, window.closes.index >= config.start_ts)
    assert len(feeds) < 100 and rows.shape == (len(window.closes), len(feeds))
    assert set(pruned.trades["symbol"]) <= set(feeds)


def test_mask_rows_are_the_per_bar_ranking():
    frame = daily_frame(40, "2022-01-03", "2022-06-30", seed=9, missing=0.02)
    strategy = ProphetTrend(top_n=4, lookback=10, history=30, refit_every=1)
    mask = strategy.candidate_mask(frame)
    window = strategy.warmup_bars + strategy.params.horizon
    for t in range(0, len(frame), 7):
        rows = frame.iloc[max(0, t + 1 - window): t + 1]
        assert sorted(mask.columns[mask.iloc[t].to_numpy()]) == sorted(top_n_by_momentum(rows, 4, 10, 30))


def test_a_malformed_mask_is_one_clear_error():
    class Bad(ProphetTrend):
        def candidate_mask(self, closes):
            return closes.iloc[:, :2].notna()

    data = load_sample().select(["AAPL", "MSFT", "KO"])
    with pytest.raises(StrategyError, match="candidate_mask must return a boolean frame"):
        run_backtest(data, Bad(top_n=2, history=60, refit_every=10), BacktestConfig(start="2022-11-01"))
