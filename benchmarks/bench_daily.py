"""Daily refits at S&P 500 scale through the product path, today's release beside this tree, in one run.

    python -m benchmarks.bench_daily                    # 503 symbols x 2022, refit every bar; then 100 vs 500 at top 20
    python -m benchmarks.bench_daily --symbols 100 --no-growth      # a quicker look

Both sides run ``python -m backtests.run --data FILE --refit-every 1 --no-plot --quiet`` (the shipped
ProphetTrend, exact engine) on the same SYNTHETIC CSV; this tree adds ``SAME_MODEL`` (the base's execution model:
next-bar fills, 0.1% commission, no broker costs or slippage), so both do the same work and write the same trades (``benchmarks/_synthetic.py``: seeded random walks, never
market data); the base is a git worktree of ``BASE_COMMIT`` (``benchmarks/_sidebyside.py``). Each run's wall time
includes Python's start-up, loading the CSV and writing the outputs, as a user waits for them. The trades the two
sides wrote are compared byte for byte. The machine is shared: each time is printed with the load around it.

Targets (issue 20): 503 symbols at most 10 s and at least 4x faster than the base; at a fixed top 20 the cost
from 100 to 500 symbols grows by at most 1.3x.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._sidebyside import BASE_COMMIT, HERE, base_tree, differing_rows, load_line, run_module
from benchmarks._synthetic import write_daily_csv
from clitools import OneLineErrorParser

FIRST, LAST = "2021-01-04", "2022-12-30"  # one warm-up year, then the traded year
START, END = "2022-01-03", "2022-12-30"
# The base predates the execution model of issue 17 (decision-bar fills, Alpaca's costs): these flags select the
# base's own model on this tree, so the comparison is of speed, with byte-identical trades to prove it.
SAME_MODEL = ("--fill", "next-bar", "--commission", "0.001", "--costs", "none", "--slippage-bps", "0")


def backtest(tree: Path, label: str, csv: Path, out: Path, *extra: str):
    return run_module(tree, label, "backtests.run", "--data", str(csv), "--start", START, "--end", END,
                      "--refit-every", "1", "--no-plot", "--quiet", "--overwrite", "--out", str(out), *extra)


def side_by_side(base: Path, csv: Path, scratch: Path, tag: str, *extra: str) -> tuple[float, float, bool]:
    """Base then new on one file; returns (base seconds, new seconds, trades identical); ratios are printed for
    both wall and CPU time (on a loaded machine the CPU time is the steadier)."""
    old = backtest(base, f"  base {BASE_COMMIT}", csv, scratch / f"{tag}-base", *extra)
    new = backtest(HERE, "  this tree     ", csv, scratch / f"{tag}-new", *extra, *SAME_MODEL)
    rows = differing_rows(scratch / f"{tag}-base" / "trades.csv", scratch / f"{tag}-new" / "trades.csv")
    same = not rows
    print(old.line())
    print(new.line())
    if rows:
        print(f"  trades.csv: {len(rows)} row(s) differ, the first:\n    base {rows[0][0]}\n    this {rows[0][1]}")
    print(f"  ratio base / this tree: wall {old.seconds / new.seconds:.1f}x, CPU {old.cpu_seconds / new.cpu_seconds:.1f}x")
    return old.seconds, new.seconds, same


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(prog="bench_daily", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=503)
    p.add_argument("--no-growth", action="store_true", help="skip the 100 vs 500 symbols run at top 20")
    args = p.parse_args(argv)
    scratch = Path(tempfile.gettempdir()) / "prophettrend-bench-daily"
    base = base_tree()
    print(f"machine: {load_line()} (shared with other sessions)")
    csv = write_daily_csv(scratch / f"daily-{args.symbols}-xnys.csv", args.symbols, FIRST, LAST)
    print(f"{args.symbols} SYNTHETIC symbols, {START}..{END}, refit every bar, top 10 (the default), exact engine:")
    old, new, same = side_by_side(base, csv, scratch, f"d{args.symbols}")
    ratio = old / new
    print(f"  speedup {ratio:.1f}x; trades.csv identical: {'yes' if same else 'NO'}")
    print(f"  target <= 10 s: {'met' if new <= 10 else 'NOT met'} ({new:.1f}s); >= 4x: "
          f"{'met' if ratio >= 4 else 'NOT met'} ({ratio:.1f}x)")
    ok = same
    if not args.no_growth:
        print("fixed top 20, 100 then 500 SYNTHETIC symbols (the 100 are the 500's first 100):")
        times = {}
        for n in (100, 500):
            csv_n = write_daily_csv(scratch / f"daily-{n}-xnys.csv", n, FIRST, LAST)
            print(f" {n} symbols:")
            times[n] = side_by_side(base, csv_n, scratch, f"g{n}", "--top-n", "20")
            ok = ok and times[n][2]
        growth_new, growth_old = times[500][1] / times[100][1], times[500][0] / times[100][0]
        print(f"  cost 500 / 100 symbols: this tree {growth_new:.2f}x, base {growth_old:.2f}x; target <= 1.3x: "
              f"{'met' if growth_new <= 1.3 else 'NOT met'}; trades.csv identical: "
              f"{'yes' if times[100][2] and times[500][2] else 'NO'}")
    print(f"machine after: {load_line()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
