"""The intraday speed-ups decide exactly as before: same jobs, same fits, same trades, for 1 or 2 worker processes.

The data are SYNTHETIC (a seeded random walk per symbol on the real XNYS sessions, some closes missing); no
market data is used or implied. No timing is asserted here: the benchmark measures (benchmarks/bench_intraday.py).
"""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from backtests.backtest import BacktestConfig, run_backtest
from backtests.backtrader_adapter import ArrayData, backtrader_numbers
from marketdata.bars import session_hours
from marketdata.prices import PriceData
from strategies import ProphetTrend
from strategies.cadence import Cadence
from strategies.engines.exact import ExactEngine
from strategies.engines.pool import ExactPool
from strategies.forecaster import Forecaster, settings_for
from strategies.params import StrategyParams
from strategies.schedule import session_axis, session_bar_numbers

SYMBOLS = [f"S{i:02d}" for i in range(8)]
FIRST, LAST = dt.date(2022, 5, 2), dt.date(2022, 5, 13)
PARAMS = StrategyParams(bar="15m", top_n=4, lookback=10, history=40, horizon=2, refit_every=1, band=0.001)


def synthetic_bars(seed: int = 11) -> PriceData:
    """SYNTHETIC 15-minute bars, with a few closes missing so the forecaster's gaps are exercised."""
    hours = session_hours(FIRST, LAST)
    stamps = pd.DatetimeIndex(np.concatenate([pd.date_range(o, c, freq="15min", inclusive="left").values
                                              for o, c in zip(hours["open"], hours["close"])]))
    rng = np.random.default_rng(seed)
    n = len(stamps)
    closes = (40 + 10 * np.arange(len(SYMBOLS))) * np.exp(np.cumsum(rng.normal(0, 0.004, (n, len(SYMBOLS))), axis=0)
                                                         + 0.02 * np.sin(np.arange(n)[:, None] / 7.0))
    closes[rng.random((n, len(SYMBOLS))) < 0.02] = np.nan
    opens = np.vstack([closes[:1], closes[:-1]]) * (1 + rng.normal(0, 0.001, closes.shape))
    return PriceData.from_closes(pd.DataFrame(closes, index=stamps, columns=SYMBOLS),
                                 opens=pd.DataFrame(opens, index=stamps, columns=SYMBOLS),
                                 source="synthetic (tests/test_intraday_speed_invariance.py)", interval="15m")


def _run(engine):
    strategy = ProphetTrend(PARAMS, forecaster=Forecaster(PARAMS, engine=engine))
    result = run_backtest(synthetic_bars(), strategy,
                          BacktestConfig(start="2022-05-06", end=str(LAST), commission=0.0, benchmark="equal-weight"),
                          cadence=Cadence.parse("15min"))
    return result, strategy.forecaster


def test_one_and_two_workers_make_the_same_forecasts_and_trades_as_the_plain_engine():
    plain, f_plain = _run(ExactEngine(settings_for(PARAMS)))
    runs = {}
    for workers in (1, 2):
        with ExactPool(settings_for(PARAMS), workers=workers) as pool:
            runs[workers] = _run(pool)
    assert len(plain.trades) > 5 and f_plain.fits > 500  # a run that trades and refits at every slot
    for workers, (result, forecaster) in runs.items():
        pd.testing.assert_frame_equal(result.trades, plain.trades, check_exact=True, obj=f"trades, {workers} workers")
        pd.testing.assert_frame_equal(result.forecasts, plain.forecasts, check_exact=True,
                                      obj=f"forecasts, {workers} workers")
        pd.testing.assert_frame_equal(result.equity, plain.equity, check_exact=True)
        assert forecaster.fits == f_plain.fits


def test_pool_carries_warm_starts_so_a_worker_fits_as_the_caller_would():
    data = synthetic_bars().closes.ffill().dropna()
    jobs_at = []
    for end in range(60, 70):  # one series, refitted bar after bar: each fit warm-starts from the one before
        window = data.iloc[end - 40:end]
        nums = session_bar_numbers(window.index, 15)
        jobs_at.append([_job(s, window, nums) for s in SYMBOLS])
    single = ExactEngine(settings_for(PARAMS))
    expected = [single.fit_predict_many(jobs) for jobs in jobs_at]
    with ExactPool(settings_for(PARAMS), workers=2) as pool:
        got = [pool.fit_predict_many(jobs) for jobs in jobs_at]
        assert set(pool.local._warm) == set(SYMBOLS)  # every series' warm start came back to the caller
    assert any(f.info["warm"] for fs in got[1:] for f in fs[len(fs) // 2:])  # the worker's fits were warm
    for exp, out in zip(expected, got):
        for a, b in zip(exp, out):
            assert a.yhat.tobytes() == b.yhat.tobytes() and a.info["steps"] == b.info["steps"]


def _job(symbol, window, nums):
    from strategies.engines import ForecastJob

    return ForecastJob(symbol, session_axis(nums), window[symbol].to_numpy(), session_axis(np.array([nums[-1] + 2])))


class _Recorder:
    name = "exact"

    def __init__(self):
        self.engine = ExactEngine(settings_for(PARAMS))
        self.jobs = []

    def fit_predict_many(self, jobs):
        self.jobs += jobs
        return self.engine.fit_predict_many(jobs)


@pytest.mark.parametrize("today_only", [False, True])
def test_the_forecaster_fits_the_windows_a_pandas_slice_gives(today_only):
    params = StrategyParams(bar="15m", history=40, horizon=2, refit_every=3, today_only=today_only)
    closes = synthetic_bars().closes
    recorder = _Recorder()
    forecaster = Forecaster(params, engine=recorder)
    checked = 0
    for end in range(80, 140, 5):
        window = closes.iloc[:end]
        before = len(recorder.jobs)
        forecaster.forecasts(window, SYMBOLS)
        anchor_pos = int(np.searchsorted(session_bar_numbers(window.index, 15) // 3,
                                         session_bar_numbers(window.index, 15)[-1] // 3, side="left"))
        for job in recorder.jobs[before:]:
            series = window[job.key].iloc[: anchor_pos + 1].dropna()  # the slice the forecaster used to take
            if today_only:
                series = series[series.index.normalize() == window.index[anchor_pos].normalize()].iloc[-40:]
            else:
                series = series.iloc[-40:]
            assert job.y.tobytes() == series.to_numpy().tobytes()
            assert (job.ds == session_axis(session_bar_numbers(series.index, 15))).all()
            checked += 1
    assert checked > 20
    with pytest.raises(KeyError):
        Forecaster(params, engine=recorder).forecasts(closes.iloc[:80], ["NOPE"])


def test_array_feed_preloads_and_ticks_as_backtraders_bar_by_bar_load():
    stamps = pd.date_range("2023-01-03 09:30", periods=40, freq="15min")
    arrays = {"datetime": backtrader_numbers(stamps), "open": np.arange(40.0) + 1, "high": np.arange(40.0) + 2,
              "low": np.arange(40.0), "close": np.arange(40.0) + 1.5}
    seen = {}

    class Watch(bt.Strategy):
        def next(self):
            d = self.datas[0]
            seen.setdefault(self.p_key, []).append((d.tick_open, d.tick_high, d.tick_low, d.tick_close, d.tick_last,
                                                    len(d), d.close.get(size=min(len(d), 5)).tolist()))

    def run(bulk):
        Watch.p_key = bulk
        names = ("preload", "_tick_fill", "next", "__len__")
        original = {name: getattr(ArrayData, name) for name in names}
        if not bulk:  # Backtrader's own bar-by-bar load, generic tick fill, next and length
            for name in names:
                setattr(ArrayData, name, getattr(bt.feed.DataBase, name))
        try:
            cerebro = bt.Cerebro(stdstats=False)
            data = ArrayData(arrays=arrays, timeframe=bt.TimeFrame.Minutes, compression=15)
            cerebro.adddata(data, name="X")
            cerebro.addstrategy(Watch)
            cerebro.run(runonce=False)
        finally:
            for name, method in original.items():
                setattr(ArrayData, name, method)
        return {alias: list(getattr(data.lines, alias).array) for alias in data.getlinealiases()}

    assert run(True) == run(False)
    assert seen[True] == seen[False] and len(seen[True]) == 40
