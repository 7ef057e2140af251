"""Wall time of the same sweep on 1 worker and on 2 (and optionally a Dask LocalCluster), side by side.

Run by hand (never by the tests):

    python benchmarks/bench_sweep.py                 # 8 cells, local executor, 1 then 2 workers
    python benchmarks/bench_sweep.py --dask --windows 4

Each run writes into a fresh temporary folder, so nothing is reused; the results must be identical.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backtests.executors import make_executor  # noqa: E402
from backtests.sweep import SweepSpec, run_sweep  # noqa: E402
from marketdata import load_sample, load_sample_index  # noqa: E402


def burn(n: int) -> int:
    """Pure-Python CPU work: the control that shows how much parallel CPU the machine offers right now."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def control() -> None:
    times = {}
    for workers in (1, 2):
        with make_executor("local", workers) as executor:
            t0 = time.perf_counter()  # pool already started: time the work only
            list(executor.run(burn, [15_000_000] * 4))
            times[workers] = time.perf_counter() - t0
    print(f"  control (pure CPU, 4 tasks): 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s, "
          f"speed-up {times[1] / times[2]:.2f}x (about 2x on an idle 2-core machine)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="AAPL,MSFT,KO,XOM")
    parser.add_argument("--windows", type=int, default=2, help="walk-forward windows (cells = windows x 2 x 2 x ...)")
    parser.add_argument("--engine", default="stan")
    parser.add_argument("--dask", action="store_true", help="also time a Dask LocalCluster of 2 workers")
    args = parser.parse_args()
    data = load_sample().select(args.symbols.split(","))
    index = load_sample_index()
    train, test = 40, 20
    end = data.closes.index[data.closes.index.searchsorted("2022-03-01") + train + test * args.windows - 1]
    spec = SweepSpec(param_sets=[{"band": 0.0}, {"band": 0.02}],
                     fixed={"top_n": 2, "history": 60, "refit_every": 10, "lookback": 20, "engine": args.engine},
                     start="2022-03-01", end=str(end.date()), train=train, test=test)
    runs = [("local", 1), ("local", 2)] + ([("dask", 2)] if args.dask else [])
    import strategies.engines.stan  # noqa: F401  (silences Prophet's plotly complaint)
    import prophet  # noqa: F401  (imported up front, so the in-process run is not charged for it)

    print(f"sweep: {len(spec.param_sets)} parameter sets x {args.windows} windows x 2 periods on "
          f"{len(data.symbols)} symbols, engine {args.engine}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    tables, seconds = {}, {}
    for kind, workers in runs:
        with tempfile.TemporaryDirectory() as tmp:
            executor = make_executor(kind, workers)
            t0 = time.perf_counter()
            outcome = run_sweep(spec, data, index, executor, Path(tmp))
            seconds[(kind, workers)] = time.perf_counter() - t0
            tables[(kind, workers)] = (Path(tmp) / "results.csv").read_bytes()
        print(f"  {executor.description:<32} {outcome.computed:>3} cells  {seconds[(kind, workers)]:6.1f} s  "
              f"({seconds[(kind, workers)] / outcome.computed:.2f} s/cell)")
    base = seconds[("local", 1)]
    for key in runs[1:]:
        print(f"  speed-up of {key[0]} x{key[1]} over 1 worker: {base / seconds[key]:.2f}x")
    control()
    identical = len(set(tables.values())) == 1
    print(f"  results.csv identical across runs: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
