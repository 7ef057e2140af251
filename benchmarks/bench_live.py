"""The live cycle at S&P 500 scale: cold (import + first cycle in a fresh process) and warm (the next cycles in
the same process, as a reused Lambda container runs them), today's release beside this tree, in one run.

    python -m benchmarks.bench_live                 # 503 names (UNIVERSE=sp500), paper broker, cached data
    python -m benchmarks.bench_live --cycles 6
    python -m benchmarks.bench_live --data sample   # UNIVERSE=sp500 on the bundled sample (20 of the 503 have prices)

Both sides run ``lambda_function``'s ``live.cycle.run`` on the SQLite paper broker with ``UNIVERSE=sp500`` and
``MARKET_DATA=yfinance`` served entirely from a price cache written beforehand (SYNTHETIC closes for the 503
symbols of the bundled list, covering the replayed days, so nothing is fetched; never market data). Each side
reads the cache in its own release's default format (the base: Parquet; this tree: npy), with the same bars; this
tree is also timed on the Parquet cache an earlier release left (read, not rewritten). Each side gets a fresh
state folder. Targets (issue 20): warm at most 0.3 s, cold at most 1 s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks._sidebyside import BASE_COMMIT, HERE, base_tree, load_line
from clitools import OneLineErrorParser
from marketdata.cache import PriceCache
from marketdata.universe import load_sp500

DAYS = ["2022-06-01", "2022-06-02", "2022-06-03", "2022-06-06", "2022-06-07", "2022-06-08", "2022-06-09",
        "2022-06-10"]


def write_cache(root: Path, file_format: str) -> Path:
    """SYNTHETIC daily bars for the bundled S&P 500 list, 2021-2022, in the Yahoo cache layout."""
    if (root / ".done").exists():
        return root
    cache = PriceCache(root, adjusted=True, file_format=file_format)
    index = pd.bdate_range("2021-01-04", "2022-12-30")
    for i, symbol in enumerate(load_sp500(prefer_refreshed=False).symbols):
        rng = np.random.default_rng([3, i])
        close = np.round(rng.uniform(20, 300) * np.exp(np.cumsum(
            rng.standard_normal(len(index)) * rng.uniform(0.008, 0.03) + 0.0003)), 2)
        bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                             "volume": np.full(len(index), 1000, dtype="int64")}, index=index)
        cache.write(symbol, bars, covered=(dt.date(2021, 1, 1), dt.date(2022, 12, 31)),
                    fetched_at="2023-01-01T00:00:00+00:00")
    (root / ".done").write_text("ok")
    return root


def cycles(tree: Path, cache: Path, state: Path, days: list[str], data: str = "cache") -> dict:
    shutil.rmtree(state, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "PROPHETTREND_CACHE": str(cache), "STATE_DIR": str(state),
           "MARKET_DATA": "yfinance" if data == "cache" else "sample", "UNIVERSE": "sp500", "LOG_LEVEL": "ERROR"}
    done = subprocess.run([sys.executable, str(HERE / "benchmarks" / "_live_cycles.py"), *days], cwd=tree, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"cycles failed in {tree}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def orders(result: dict) -> list:
    """What each replayed cycle sent (symbol, side, quantity): the same on both sides, or the speed is no gain."""
    return [(c["day"], c["status"], c["orders"]) for c in result["cycles"]]


def describe(label: str, result: dict) -> tuple[float, float]:
    first = result["cycles"][0]
    warm = [c["seconds"] for c in result["cycles"][1:]]
    cold = result["import_s"] + first["seconds"]
    print(f"  {label}: cold {cold:.2f}s (import {result['import_s']:.2f}s + first cycle {first['seconds']:.2f}s); "
          f"warm median {statistics.median(warm):.2f}s, min {min(warm):.2f}s, max {max(warm):.2f}s over "
          f"{len(warm)} cycles ({', '.join(c['status'] for c in result['cycles'])}) [{load_line()}]")
    return cold, statistics.median(warm)


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="bench_live", description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=5, help="cycles per process (the first is the cold one)")
    p.add_argument("--data", choices=["cache", "sample"], default="cache",
                   help="cache: SYNTHETIC bars for all 503 names in a Yahoo cache; sample: the bundled 20 stocks")
    args = p.parse_args(argv)
    if not 2 <= args.cycles <= len(DAYS):
        p.error(f"--cycles must be 2..{len(DAYS)}")
    scratch = Path(tempfile.gettempdir()) / "prophettrend-bench-live"
    print(f"machine: {load_line()} (shared with other sessions)")
    parquet = write_cache(scratch / "cache", "parquet")
    npy = write_cache(scratch / "cache-npy", "npy")
    days = DAYS[: args.cycles]
    what = "cached SYNTHETIC bars for all" if args.data == "cache" else "the bundled sample (20 priced) of"
    print(f"UNIVERSE=sp500, paper broker, {what} 503 names, {args.cycles} cycles per process:")
    runs = {"base": cycles(base_tree(), parquet, scratch / "state-base", days, args.data),
            "npy": cycles(HERE, npy, scratch / "state-new", days, args.data),
            "parquet": cycles(HERE, parquet, scratch / "state-new", days, args.data)}
    old = describe(f"base {BASE_COMMIT} (Parquet cache)", runs["base"])
    new = describe("this tree (npy cache)    ", runs["npy"])
    describe("this tree (Parquet cache)", runs["parquet"])
    same = orders(runs["base"]) == orders(runs["npy"]) == orders(runs["parquet"])
    sent = sum(len(c["orders"]) for c in runs["npy"]["cycles"])
    print(f"  orders identical on all three ({sent} orders over {len(days)} cycles): {'yes' if same else 'NO'}")
    print(f"  ratio base / this tree: cold {old[0] / new[0]:.1f}x, warm {old[1] / new[1]:.1f}x; targets cold <= 1 s: "
          f"{'met' if new[0] <= 1 else 'NOT met'}, warm <= 0.3 s: {'met' if new[1] <= 0.3 else 'NOT met'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
