"""Intraday at S&P 500 scale through the product path: ``python -m backtests.run`` on 15-minute bars, today's
release beside this tree, in one run.

    python -m benchmarks.bench_intraday                                  # 500 symbols x 252 sessions (long: run by hand)
    python -m benchmarks.bench_intraday --symbols 500 --sessions 10      # a quicker look, both sides
    python -m benchmarks.bench_intraday --base-sessions 10               # the year on this tree, 10 sessions on the base
    python -m benchmarks.bench_intraday --compare-models                 # session-time axis vs daily seasonality only

The data are SYNTHETIC (a seeded random walk per symbol on the real XNYS 2023 sessions, with overnight gaps),
written as a CSV (timestamp, symbol, open, close) that both sides read with ``--data``; no market data is used or
implied. Both sides run the shipped ProphetTrend with the same flags: top 20 by momentum over 26 bars, Prophet
(exact engine) on the last 100 bars refitted at every slot (09:45 to 15:45), 2 bars ahead, ``--workers 2``. The
base is a git worktree of ``BASE_COMMIT`` (``benchmarks/_sidebyside.py``). The machine is shared: the load is
sampled during the run and printed.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks._sidebyside import BASE_COMMIT, HERE, base_tree, load_line, run_module, same_file
from clitools import OneLineErrorParser
from marketdata.bars import session_hours
from marketdata.prices import PriceData
from strategies.forecaster import Forecaster
from strategies.params import StrategyParams

FLAGS = ["--bar", "15m", "--cadence", "15min", "--top-n", "20", "--lookback", "26", "--history", "100", "--horizon",
         "2", "--refit-every", "1", "--band", "0.002", "--commission", "0", "--benchmark", "equal-weight",
         "--workers", "2", "--no-plot", "--quiet", "--overwrite"]
WARM_SESSIONS = 8


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


def write_csv(data: PriceData, path: Path) -> Path:
    """The bars as a long CSV (timestamp, symbol, open, close), as a user's file would hold them."""
    if not path.exists():
        long = pd.DataFrame({
            "timestamp": np.repeat(data.closes.index.strftime("%Y-%m-%d %H:%M").to_numpy(), data.closes.shape[1]),
            "symbol": np.tile(np.asarray(data.closes.columns), len(data.closes)),
            "open": data.opens.to_numpy().ravel().round(4), "close": data.closes.to_numpy().ravel().round(4)})
        path.parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(path, index=False)
    return path


# The base predates issue 17's broker costs: this tree runs without them (both fill at the next bar's open), so
# both sides do the same work and their trades can be compared byte for byte.
SAME_MODEL = ("--costs", "none", "--slippage-bps", "0")


def backtest(tree: Path, label: str, csv: Path, start: dt.date, end: dt.date, out: Path, *extra: str):
    return run_module(tree, label, "backtests.run", "--data", str(csv), "--start", str(start), "--end", str(end),
                      "--out", str(out), *FLAGS, *extra)


def main(argv=None) -> int:
    p = OneLineErrorParser(prog="bench_intraday", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--sessions", type=int, default=252, help="traded sessions on this tree")
    p.add_argument("--base-sessions", type=int, default=None,
                   help="traded sessions on the base (default: --sessions; 0: skip the base)")
    p.add_argument("--compare-models", action="store_true")
    args = p.parse_args(argv)
    print(f"machine: {load_line()} (shared with other sessions)")
    watch = LoadWatch()
    hours = session_hours(dt.date(2022, 12, 1), dt.date(2023, 12, 29))
    days = [d.date() for d in hours.index][: args.sessions + WARM_SESSIONS]
    data = synthetic(args.symbols, days[0], days[-1])
    if args.compare_models:
        compare_models(data)
        return 0
    scratch = Path(tempfile.gettempdir()) / "prophettrend-bench-intraday"
    csv = write_csv(data, scratch / f"bars-{args.symbols}x{len(days)}.csv")
    print(f"data: {args.symbols} symbols x {len(days)} sessions ({WARM_SESSIONS} warm-up) of SYNTHETIC 15m bars = "
          f"{data.closes.size:,} rows in {csv} ({csv.stat().st_size / 1e6:.0f} MB)")
    print(f"python -m backtests.run --data {csv.name} --start .. --end .. {' '.join(FLAGS)}")
    start = days[WARM_SESSIONS]
    new = backtest(HERE, f"  this tree, {args.sessions} sessions", csv, start, days[-1], scratch / "new", *SAME_MODEL)
    print(new.line())
    base_sessions = args.sessions if args.base_sessions is None else args.base_sessions
    ok = True
    if base_sessions:
        base_end = days[WARM_SESSIONS + base_sessions - 1]
        old = backtest(base_tree(), f"  base {BASE_COMMIT}, {base_sessions} sessions", csv, start, base_end,
                       scratch / "base")
        print(old.line())
        if base_sessions == args.sessions:
            same = same_file(scratch / "base" / "trades.csv", scratch / "new" / "trades.csv")
            ok = same
            print(f"  speedup {old.seconds / new.seconds:.1f}x; trades.csv identical: {'yes' if same else 'NO'}")
        else:
            print(f"  base per session {old.seconds / base_sessions:.2f}s, this tree {new.seconds / args.sessions:.2f}s")
    trades = sum(1 for _ in open(scratch / "new" / "trades.csv")) - 1
    full = args.symbols >= 500 and args.sessions >= 252
    verdict = ("met" if new.seconds <= 300 else "NOT met") if full else "not judged (a shorter run)"
    print(f"  this tree: {trades:,} fills; {new.seconds / 60:.2f} min for {args.symbols} x {args.sessions} sessions; "
          f"target <= 5 min for 500 x 252 sessions: {verdict}")
    print(watch.stop())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
