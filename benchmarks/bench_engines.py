"""Exact versus Stan engine: one-year backtests with daily refits under both engines, in one run.

    python -m benchmarks.bench_engines                 # 20 sample stocks, 2022-01-03..2022-12-28, refit every bar
    python -m benchmarks.bench_engines --start 2022-11-01 --refit-every 5    # a quicker look

Prints per-fit and total times, the speedup, how often the two engines' decisions agree on the same inputs, the
forecast differences, and the log posterior each engine reached on every fit both made (Stan's objective,
evaluated by ``_solver.log_posterior``, which equals Stan's own ``lp__``). The last line is ``speedup: N.Nx``.

Decision agreement is measured where the inputs are identical: a forecast for (symbol, bar) depends only on the
closes, so every symbol-bar that both backtests forecast is compared. Holdings drift apart between the two runs, so
each engine's forecast is turned into a decision with the same price and the same holding (the exact run's); the
stricter zone agreement (price below, inside or above the forecast band, which fixes the decision for any holding)
is printed too.

Stan is run with ``sig_figs=17`` so that its optimum is read at full precision (cmdstan prints 6 digits by
default); that changes only how cmdstan prints its result, not the optimisation or its cost.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # allow ``python benchmarks/bench_engines.py`` as well as ``-m``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from backtests.backtest import BacktestConfig, run_backtest
from clitools import OneLineErrorParser, guarded
from marketdata import DataError, load_sample, load_sample_index
from strategies.engines import ForecastJob, ProphetSettings
from strategies.engines._solver import log_posterior
from strategies.engines.base import Forecast
from strategies.engines.exact import ExactEngine
from strategies.engines.stan import StanEngine
from strategies.forecaster import Forecaster, settings_for
from strategies.params import StrategyParams
from strategies.signals import Position, decide_action


class FullPrecisionStan(StanEngine):
    """Stock Prophet, reading Stan's optimum with 17 significant digits instead of cmdstan's default 6."""

    def fit(self, ds: pd.DatetimeIndex, y: np.ndarray):
        from prophet import Prophet

        model = Prophet(**self.settings.prophet_kwargs())
        model.fit(pd.DataFrame({"ds": ds, "y": np.asarray(y, dtype="float64")}), sig_figs=17)
        return model


@dataclass
class TimedEngine:
    """Wraps an engine: wall time spent inside it, and every job with its forecast (keyed by symbol, fit bar)."""

    engine: object
    seconds: float = 0.0
    fits: int = 0
    records: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.engine.name

    def fit_predict_many(self, jobs: list[ForecastJob]) -> list[Forecast]:
        start = time.perf_counter()
        results = self.engine.fit_predict_many(jobs)
        self.seconds += time.perf_counter() - start
        self.fits += len(jobs)
        for job, forecast in zip(jobs, results):
            self.records[(job.key, job.ds[-1])] = (job, forecast)
        return results


def backtest(name: str, engine, params: StrategyParams, config: BacktestConfig, data, index):
    timed = TimedEngine(engine)
    forecaster = Forecaster(params.with_(engine=name), engine=timed)
    start = time.perf_counter()
    result = run_backtest(data, params.with_(engine=name), config, index=index, forecaster=forecaster)
    return result, timed, time.perf_counter() - start


def zones(frame: pd.DataFrame, band: float) -> np.ndarray:
    """-1 below the band, 0 inside, +1 above: with the holding, this fixes the decision."""
    price, forecast = frame["price"].to_numpy(), frame["forecast"].to_numpy()
    return np.where(price < forecast * (1 - band), -1, np.where(price > forecast * (1 + band), 1, 0))


def same_holding_decisions(both: pd.DataFrame, params: StrategyParams) -> pd.DataFrame:
    """Each engine's action at each symbol-bar, given the same price and the holding the exact run had there."""
    held = (both["action_x"] == "sell") | both["reason_x"].isin(["holding", "stop_loss", "take_profit"])
    rows = []
    for price, fx, fs, is_held in zip(both["price_x"], both["forecast_x"], both["forecast_s"], held):
        position = Position(1, price) if is_held else None
        rows.append((decide_action(price, fx, position, params)[0], decide_action(price, fs, position, params)[0]))
    return pd.DataFrame(rows, columns=["exact", "stan"])


def stan_lp(exact: ExactEngine, job: ForecastJob, forecast: Forecast) -> float:
    """Stan's objective at Stan's own optimum (Prophet's zero dummy beta adds its prior when unseasonal)."""
    design = exact.design(job)
    p = forecast.info["params"]
    beta = np.ravel(p["beta"])
    seasonal = design.beta_slice.stop > design.beta_slice.start
    theta = np.concatenate([np.ravel(p["k"]), np.ravel(p["m"]), np.ravel(p["delta"]), beta if seasonal else []])
    return log_posterior(design, theta, float(np.ravel(p["sigma_obs"])[0]), exact.settings.changepoint_prior_scale,
                         None if seasonal else beta)


def warm_fit_cost(data, settings: ProphetSettings, history: int, bars: int, end: str) -> tuple[float, float, float]:
    """(median warm, mean warm, mean cold) milliseconds per exact fit+forecast, one job per call."""
    engine = ExactEngine(settings)
    closes = data.closes.loc[:end]
    warm, cold = [], []
    for symbol in closes.columns:
        series = closes[symbol].dropna()
        for i in range(bars):
            window = series.iloc[len(series) - bars - history + i: len(series) - bars + i]
            future = pd.bdate_range(window.index[-1], periods=6)[1:]
            job = ForecastJob(symbol, pd.DatetimeIndex(window.index), window.to_numpy(), future)
            start = time.perf_counter()
            engine.fit_predict_many([job])
            (warm if i else cold).append(time.perf_counter() - start)
    return float(np.median(warm) * 1e3), float(np.mean(warm) * 1e3), float(np.mean(cold) * 1e3)


def stan_fit_cost(data, settings: ProphetSettings, history: int, fits: int, end: str) -> float:
    engine = StanEngine(settings)
    closes = data.closes.loc[:end]
    seconds = []
    for symbol in list(closes.columns)[:fits]:
        window = closes[symbol].dropna().iloc[-history:]
        job = ForecastJob(symbol, pd.DatetimeIndex(window.index), window.to_numpy(),
                          pd.bdate_range(window.index[-1], periods=6)[1:])
        start = time.perf_counter()
        engine.fit_predict_many([job])
        seconds.append(time.perf_counter() - start)
    return float(np.mean(seconds) * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.bench_engines",
                                description="Backtest the sample stocks under the exact and the stan engine in "
                                "one run and compare time, decisions and log posterior.")
    parser.add_argument("--start", default="2022-01-03", help="first trading day (default: %(default)s)")
    parser.add_argument("--end", default="2022-12-28", help="last day (default: %(default)s)")
    parser.add_argument("--refit-every", type=int, default=1, help="refit interval in bars (default: %(default)s)")
    parser.add_argument("--micro-bars", type=int, default=40,
                        help="windows per symbol for the warm per-fit timing (default: %(default)s)")
    args = parser.parse_args(argv)

    data, index = load_sample(), load_sample_index()
    params = StrategyParams(refit_every=args.refit_every)
    config = BacktestConfig(start=args.start, end=args.end)
    settings = settings_for(params)
    print(f"engines benchmark: {len(data.symbols)} symbols, {args.start}..{args.end}, refit_every={params.refit_every}, "
          f"history={params.history}, top_n={params.top_n}, horizon={params.horizon}", flush=True)

    res_x, timed_x, total_x = backtest("exact", ExactEngine(settings), params, config, data, index)
    paths = pd.Series([f.info.get("path") for _, f in timed_x.records.values()]).value_counts().to_dict()
    print(f"exact: {timed_x.fits} fits, {timed_x.seconds:.2f} s in the engine ({timed_x.seconds / timed_x.fits * 1e3:.2f} "
          f"ms/fit), backtest total {total_x:.2f} s; paths {paths}", flush=True)
    res_s, timed_s, total_s = backtest("stan", FullPrecisionStan(settings), params, config, data, index)
    print(f"stan : {timed_s.fits} fits, {timed_s.seconds:.2f} s in the engine ({timed_s.seconds / timed_s.fits * 1e3:.2f} "
          f"ms/fit), backtest total {total_s:.2f} s", flush=True)

    end = args.end
    for history in (252, 500):
        median, mean, cold = warm_fit_cost(data, settings, history, args.micro_bars, end)
        print(f"exact fit+forecast, {history} closes, one job per call: warm median {median:.2f} ms, "
              f"warm mean {mean:.2f} ms, cold mean {cold:.2f} ms", flush=True)
    print(f"stan fit+forecast, 500 closes: mean {stan_fit_cost(data, settings, 500, 5, end):.1f} ms over 5 fits",
          flush=True)

    both = res_x.forecasts.merge(res_s.forecasts, on=["date", "symbol"], suffixes=("_x", "_s"))
    both = both.dropna(subset=["forecast_x", "forecast_s"]).reset_index(drop=True)
    if both.empty:
        raise DataError("the two runs share no forecast symbol-bars; choose a longer window")
    zx = zones(both.rename(columns={"price_x": "price", "forecast_x": "forecast"}), params.band)
    zs = zones(both.rename(columns={"price_s": "price", "forecast_s": "forecast"}), params.band)
    zone_agree = float(np.mean(zx == zs))
    decisions = same_holding_decisions(both, params)
    decision_agree = float(np.mean(decisions["exact"] == decisions["stan"]))
    rel = np.abs(both["forecast_x"] - both["forecast_s"]) / both["price_x"]
    print(f"decisions on {len(both)} symbol-bars forecast by both runs (same closes, same fit):")
    print(f"  decision agreement (same price and holding, holding taken from the exact run): {decision_agree:.2%} "
          f"({int(np.sum(decisions['exact'] != decisions['stan']))} differ)")
    print(f"  zone agreement (below/inside/above the band, whatever the holding): {zone_agree:.2%} "
          f"({int(np.sum(zx != zs))} differ)")
    print(f"forecast |exact - stan| / price: median {rel.median():.3%}, p99 {rel.quantile(0.99):.3%}, max {rel.max():.3%}")

    exact_engine = ExactEngine(settings)
    common = sorted(set(timed_x.records) & set(timed_s.records))
    diffs, rels, kkts = [], [], []
    for key in common:
        job, fx = timed_x.records[key]
        _, fs = timed_s.records[key]
        if fx.info.get("path") != "exact":
            continue
        lp_s = stan_lp(exact_engine, job, fs)
        diffs.append(fx.info["lp"] - lp_s)
        rels.append((fx.info["lp"] - lp_s) / abs(lp_s))
        kkts.append(fx.info["kkt"])
    diffs, rels = np.array(diffs), np.array(rels)
    print(f"log posterior, exact minus stan, over {len(diffs)} fits both made: min {diffs.min():+.3g} "
          f"(relative {rels.min():+.2e}), median {np.median(diffs):+.3g}, max {diffs.max():+.3g}; "
          f"below stan by more than 1e-6 relative: {int(np.sum(rels < -1e-6))}; max KKT residual {max(kkts):.1e}")
    print(f"speedup: {total_s / total_x:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(guarded(main, DataError)())
