"""Intraday speed at the scale users want: ~500 symbols, 15-minute bars, one year, top 20, refit at every slot.

    python -m benchmarks.bench_intraday                       # 500 symbols x 252 sessions (the target run)
    python -m benchmarks.bench_intraday --symbols 50 --sessions 20      # a quick look
    python -m benchmarks.bench_intraday --compare-models      # session-time axis vs daily seasonality only

The data are SYNTHETIC (a seeded random walk per symbol on the real XNYS 2023 sessions, with overnight gaps);
no market data is used or implied. Both engines run in one invocation: the exact engine drives the whole
backtest; stan (stock Prophet) fits a sample of the very same jobs and its total is extrapolated from its mean
time per fit (running it for every fit would take hours), and the ratio is printed.

Design choices the numbers rest on:
- Backtrader is fed numpy arrays (``backtests.backtrader_adapter.ArrayData``), not PandasData's per-value reads.
- The universe is ranked once per session outside the per-bar loop: momentum over ``--rank-sessions`` sessions
  ending at the previous session's last bar, which is complete before the first slot (09:45), so the ranking
  provably sees only past rows. The strategy then decides among that day's top 20 at every slot.
- Only names that make some day's top 20 get a Backtrader feed: the others can never be traded.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from backtests.backtest import BacktestConfig, run_backtest
from clitools import OneLineErrorParser
from marketdata.bars import session_hours
from marketdata.prices import PriceData
from strategies.cadence import Cadence
from strategies.engines import ForecastJob
from strategies.engines.pool import ExactPool
from strategies.engines.stan import StanEngine
from strategies.forecaster import Forecaster, settings_for
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend


def synthetic(n_symbols: int, first: dt.date, last: dt.date, minutes: int = 15, seed: int = 12) -> PriceData:
    """SYNTHETIC bars: per symbol a random walk with its own drift and volatility, an overnight gap each night."""
    hours = session_hours(first, last)
    per_day = [pd.date_range(o, c, freq=f"{minutes}min", inclusive="left") for o, c in zip(hours["open"], hours["close"])]
    stamps = pd.DatetimeIndex(np.concatenate([d.values for d in per_day]))
    day_start = np.zeros(len(stamps), dtype=bool)
    day_start[np.cumsum([0] + [len(d) for d in per_day[:-1]])] = True
    rng = np.random.default_rng(seed)
    n = len(stamps)
    drift = rng.normal(0, 0.00005, n_symbols)
    vol = rng.uniform(0.001, 0.004, n_symbols)
    steps = rng.standard_normal((n, n_symbols)) * vol + drift
    steps[day_start] += rng.standard_normal((int(day_start.sum()), n_symbols)) * vol * 4  # overnight gaps
    closes = rng.uniform(20, 300, n_symbols) * np.exp(np.cumsum(steps, axis=0))
    opens = np.vstack([closes[:1], closes[:-1]]) * (1 + rng.normal(0, 0.0005, (n, n_symbols)))
    names = [f"S{i:03d}" for i in range(n_symbols)]
    return PriceData.from_closes(pd.DataFrame(closes, index=stamps, columns=names),
                                 opens=pd.DataFrame(opens, index=stamps, columns=names),
                                 source="synthetic (benchmarks/bench_intraday.py)", interval=f"{minutes}m")


def daily_ranking(closes: pd.DataFrame, top: int, sessions: int) -> dict[dt.date, list[str]]:
    """Top ``top`` by return over the last ``sessions`` sessions, as of each session's open (previous closes)."""
    last_bar = closes.groupby(closes.index.normalize()).last()  # each session's last bar
    momentum = last_bar / last_bar.shift(sessions) - 1.0
    known = momentum.shift(1)  # at a session's first slot only the previous session's last bar is complete
    out = {}
    for day, row in known.iterrows():
        row = row.dropna()
        if len(row):
            ranked = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))
            out[day.date()] = [s for s, _ in ranked[:top]]
    return out


class DailyRanked(ProphetTrend):
    """ProphetTrend deciding among the session's precomputed top names (ranking done outside the bar loop)."""

    name = "bench-intraday"

    def __init__(self, params, ranking, forecaster=None):
        super().__init__(params, forecaster=forecaster)
        self.ranking = ranking

    def decide(self, closes, positions, cash):
        self.candidates = self.ranking.get(closes.index[-1].date(), [])
        return super().decide(closes, positions, cash)


class Nothing(DailyRanked):
    """Decides nothing (no fits): the same data, feeds and Backtrader run, to measure what they cost alone."""

    def decide(self, closes, positions, cash):
        return {}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_peak_mb() -> float:
    """Largest peak RSS of any finished child process (the engine's worker, once closed)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


class LoadWatch:
    """Samples the machine's 1-minute load average every ``every`` seconds while the run goes (it is shared)."""

    def __init__(self, every: float = 10.0) -> None:
        import threading

        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        return (f"1-min load average during the run: min {min(self.samples):.2f}, mean "
                f"{sum(self.samples) / len(self.samples):.2f}, max {max(self.samples):.2f} over {len(self.samples)} "
                f"samples on {os.cpu_count()} cores (other sessions share this machine)")


def compare_models(data: PriceData, n_series: int = 40, history: int = 130, horizon: int = 4) -> None:
    """Held-out forecast error of the two intraday models on the same windows (SYNTHETIC data)."""
    closes = data.closes
    rng = np.random.default_rng(3)
    errors = {"session": [], "clock": []}
    for model in errors:
        params = StrategyParams(bar=data.interval, history=history, horizon=horizon, refit_every=1, intraday_model=model)
        for k in range(n_series):
            symbol = closes.columns[k % closes.shape[1]]
            end = int(rng.integers(history + 30, len(closes) - horizon - 1)) if model == "session" else None
            errors[model].append((symbol, end))
    ends = errors["session"]
    result = {}
    for model in ("session", "clock"):
        params = StrategyParams(bar=data.interval, history=history, horizon=horizon, refit_every=1, intraday_model=model)
        f = Forecaster(params)
        err = []
        for symbol, end in ends:
            window = closes[[symbol]].iloc[: end + 1]
            point = f.forecasts(window, [symbol]).get(symbol)
            actual = closes[symbol].iloc[end + horizon]
            err.append(abs(point.yhat - actual) / actual)
        result[model] = (float(np.mean(err)), f.fallbacks)
    for model, (mae, fallbacks) in result.items():
        print(f"  {model:8s} mean abs error {mae * 100:.3f}% of price over {len(ends)} held-out windows "
              f"(horizon {horizon} bars), stan fallbacks {fallbacks}")


def main(argv=None) -> int:
    p = OneLineErrorParser(prog="bench_intraday", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--sessions", type=int, default=252)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--history", type=int, default=100, help="bars Prophet is fitted on")
    p.add_argument("--stan-sample", type=int, default=30, help="jobs stan fits for the extrapolation")
    p.add_argument("--compare-models", action="store_true")
    p.add_argument("--intraday-model", choices=["session", "clock"], default=None,
                   help="ProphetTrend's intraday model (default: its params' default)")
    p.add_argument("--workers", type=int, default=2, help="processes fitting the exact engine (1: in-process)")
    p.add_argument("--nothing", action="store_true",
                   help="memory probe: same data, feeds and Backtrader run, a strategy that decides nothing")
    p.add_argument("--no-gc-freeze", action="store_true",
                   help="leave the set-up's objects to the cyclic garbage collector (default: gc.freeze() them)")
    p.add_argument("--trades-out", help="write the fills as CSV (to compare runs: same decisions, same trades)")
    args = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; uptime load averages {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    watch = LoadWatch()
    first, last = dt.date(2022, 12, 1), dt.date(2023, 12, 29)
    t0 = time.perf_counter()
    hours = session_hours(first, last)
    days = [d.date() for d in hours.index]
    warm_days = 8
    days = days[: args.sessions + warm_days]
    data = synthetic(args.symbols, days[0], days[-1])
    t_data = time.perf_counter() - t0
    print(f"data: {args.symbols} symbols x {len(days)} sessions of SYNTHETIC 15m bars = {data.closes.size:,} rows "
          f"({len(data):,} bars per symbol) in {t_data:.1f}s")
    if args.compare_models:
        compare_models(data)
        return 0
    t1 = time.perf_counter()
    ranking = daily_ranking(data.closes, args.top, sessions=5)
    tradeable = sorted({s for names in ranking.values() for s in names})
    t_rank = time.perf_counter() - t1
    print(f"daily ranking outside the bar loop: {t_rank:.2f}s; {len(tradeable)} of {args.symbols} names ever in a "
          f"top {args.top} get a Backtrader feed")
    params = StrategyParams(bar="15m", top_n=args.top, lookback=26, history=args.history, horizon=2, refit_every=1,
                            band=0.002, engine="exact",
                            **({"intraday_model": args.intraday_model} if args.intraday_model else {}))
    pool = ExactPool(settings_for(params), workers=args.workers)
    strategy = (Nothing if args.nothing else DailyRanked)(params, ranking, forecaster=Forecaster(params, engine=pool))
    start = days[warm_days]
    config = BacktestConfig(start=str(start), end=str(days[-1]), commission=0.0, benchmark="equal-weight")
    if not args.no_gc_freeze:
        # The data, feeds and engine live for the whole run: keep the garbage collector from re-scanning them at
        # every full collection (a process setting; no number changes). See docs/engines.md.
        gc.collect()
        gc.freeze()
    t2 = time.perf_counter()
    result = run_backtest(data.select(tradeable), strategy, config, cadence=Cadence.parse("15min"))
    t_bt = time.perf_counter() - t2
    pool.close()
    fits = strategy.forecaster.fits
    if args.trades_out:
        result.trades.to_csv(args.trades_out, index=False, float_format="%.17g")
        result.forecasts.to_csv(args.trades_out + ".forecasts.csv", index=False, float_format="%.17g")
    print(f"exact engine backtest: {t_bt:.1f}s for {result.summary['slots']:,} slots, {fits:,} fits "
          f"({strategy.forecaster.fallbacks} handed to stan), {len(result.trades):,} fills, {args.workers} "
          f"process(es) fitting")
    if args.nothing:
        print(watch.stop())
        print(f"peak memory (max RSS) with no fits: {peak_mb():.0f} MB for {len(tradeable)} feeds x {len(data):,} bars "
              f"and {data.closes.size:,} rows of data")
        return 0
    total_exact = time.perf_counter() - t0
    # stan on a sample of the same jobs: the same windows the exact engine fitted
    closes = data.closes
    rng = np.random.default_rng(5)
    jobs = []
    for _ in range(args.stan_sample):
        symbol = tradeable[int(rng.integers(len(tradeable)))]
        end = int(rng.integers(args.history + 30, len(closes) - 5))
        stamps = closes.index[end - args.history + 1: end + 1]
        from strategies.schedule import session_axis, session_bar_numbers

        nums = session_bar_numbers(stamps, 15)
        jobs.append(ForecastJob(symbol, session_axis(nums), closes[symbol].iloc[end - args.history + 1: end + 1].to_numpy(),
                                session_axis(np.array([nums[-1] + 2]))))
    from strategies.engines.exact import ExactEngine

    settings = settings_for(params)
    exact = ExactEngine(settings)
    t3 = time.perf_counter()
    exact.fit_predict_many(jobs)
    per_exact_cold = (time.perf_counter() - t3) / len(jobs)
    stan = StanEngine(settings)
    stan.fit_predict_many(jobs[:1])  # import and compile cost out of the timing
    t4 = time.perf_counter()
    stan.fit_predict_many(jobs)
    per_stan = (time.perf_counter() - t4) / len(jobs)
    per_exact_run = t_bt / max(fits, 1)
    print(f"stan: {per_stan * 1000:.1f} ms per fit over {len(jobs)} sampled jobs -> {fits:,} fits would take "
          f"{per_stan * fits / 3600:.2f} h (extrapolated)")
    print(f"exact: {per_exact_cold * 1000:.2f} ms per cold fit on the same jobs; whole backtest {per_exact_run * 1000:.2f} "
          f"ms per fit including Backtrader")
    print(f"ratio stan/exact per fit (same jobs, cold): {per_stan / per_exact_cold:.0f}x; stan extrapolated / exact "
          f"whole run: {per_stan * fits / t_bt:.0f}x")
    print(f"total exact run (data, ranking, backtest): {total_exact:.1f}s = {total_exact / 60:.2f} min "
          f"(target <= 5 min on 2 cores): {'met' if total_exact <= 300 else 'NOT met'}")
    print(f"peak memory (max RSS): {peak_mb():.0f} MB in the main process"
          + (f", {worker_peak_mb():.0f} MB in the fitting worker" if args.workers > 1 else ""))
    print(watch.stop())
    print(f"summary: total_return {result.summary['total_return']:.4f} sharpe {result.summary['sharpe']:.2f} "
          f"max_drawdown {result.summary['max_drawdown']:.4f} (SYNTHETIC data: says nothing about markets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
