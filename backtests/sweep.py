"""``python -m backtests.sweep``: a parameter grid evaluated walk-forward, on local cores or a Dask cluster.

For every train/test window and every parameter set, one backtest on the train period and one on the test
period (each warmed up on the rows before its own start). Per window, the parameters with the best train metric
are chosen and reported on the test period that follows; the chosen test periods are stitched into one
out-of-sample curve. Finished cells are saved at once under ``OUT/cells/``; running again into the same
``--out`` recomputes nothing that is already there.

Example (a small sweep; ``--executor dask`` runs the same cells on a Dask LocalCluster):

    python -m backtests.sweep --symbols AAPL,MSFT,KO --set top_n=2 --set refit_every=10 \\
        --grid band=0.0,0.02 --grid history=60,120 --start 2022-01-03 --train 60 --test 40 --out runs/sweep-demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from backtests import cells, metrics, overfitting
from backtests.backtest import BacktestConfig
from backtests.executors import Executor, make_executor
from backtests.grid import build_params, expand, load_grid_file, parse_grid_flags, parse_set_flags, swept_names
from backtests.outputs import write_json
from backtests.run import load_data, resolve_benchmark
from backtests.sweep_report import format_oos, lead_line, write_heatmap, write_oos_plot
from backtests.walkforward import CHOICE_METRICS, Scheme, Window, choose, split_windows, stitch, stitched_summary
from backtests.strategy_args import add_strategy_arguments, config_from_args
from clitools import OneLineErrorParser, UserError, guarded, progress
from marketdata import DataError, PriceData
from strategies.base import StrategyError
from strategies.loader import coerce, load_strategy
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend
from strategies.rules import Rules

SEGMENTS = ("train", "test")
PBO_BLOCKS = 8  # CSCV blocks: C(8, 4) = 70 splits of the out-of-sample days


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and how to evaluate it (everything except where the cells run)."""

    param_sets: list[dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    start: str = "2019-01-01"
    end: str = "2022-12-28"
    train: int = 252
    test: int = 63
    step: int | None = None
    scheme: Scheme = "rolling"
    metric: str = "sharpe"
    cash: float = 100_000.0
    commission: float = 0.001
    benchmark: str = "index"
    heatmap: tuple[str, ...] | None = None
    strategy: str = "prophet-trend"  # any strategy spec (strategies.loader); its Params fields are the grid's names
    name: str | None = None
    rules: Rules = field(default_factory=Rules)

    def strategy_class(self):
        return load_strategy(self.strategy)

    def params(self) -> list[StrategyParams | cells.StrategySpec]:
        if issubclass(self.strategy_class(), ProphetTrend):
            return [build_params(s, self.fixed, StrategyParams()) for s in self.param_sets]
        out = []
        for s in self.param_sets:
            spec = cells.StrategySpec(self.strategy, tuple(sorted({**self.fixed, **s}.items())), self.name)
            try:
                spec.build()
            except StrategyError as exc:
                raise UserError(f"invalid parameters {s}: {exc}") from None
            out.append(spec)
        return out

    def config(self, start: pd.Timestamp, end: pd.Timestamp) -> BacktestConfig:
        return BacktestConfig(start=start.date().isoformat(), end=end.date().isoformat(), cash=self.cash,
                              commission=self.commission, benchmark=self.benchmark, rules=self.rules)


@dataclass
class SweepOutcome:
    table: pd.DataFrame
    oos: dict[str, Any]
    computed: int
    reused: int


def plan(spec: SweepSpec, data: PriceData, index: pd.Series | None) -> tuple[list[Window], dict[tuple, cells.Cell]]:
    """The windows and every cell, keyed by (window, parameter set, segment). Raises UserError if any cannot run."""
    start, end = pd.Timestamp(spec.start), pd.Timestamp(spec.end)
    if start > end:
        raise UserError(f"--start {start.date()} is after --end {end.date()}")
    dates = data.closes.index
    days = dates[(dates >= start) & (dates <= end)]
    windows = split_windows(days, spec.train, spec.test, spec.step, spec.scheme)
    params = spec.params()
    need = max(p.warmup_bars for p in params)
    first = int(dates.searchsorted(windows[0].train_start))
    if first < need:
        worst = max(params, key=lambda p: p.warmup_bars)
        what = f"history {worst.history}" if isinstance(worst, StrategyParams) else f"{spec.strategy}"
        raise UserError(f"the first train window starts {windows[0].train_start.date()} with {first} bars before it, "
                        f"but {what} needs {need} bars of warm-up; choose a later --start"
                        f"{' or a shorter history' if isinstance(worst, StrategyParams) else ''}")
    planned = {}
    for window in windows:
        for number, p in enumerate(params):
            for segment in SEGMENTS:
                seg_start, seg_end = window.segment(segment)
                try:
                    planned[(window.number, number, segment)] = cells.make_cell(
                        data, index, p, spec.config(seg_start, seg_end))
                except DataError as exc:
                    raise UserError(f"window {window.number} {segment} ({seg_start.date()} to {seg_end.date()}): "
                                    f"{exc}") from None
    return windows, planned


def unused_tail(dates: pd.DatetimeIndex, spec: SweepSpec, last: Window) -> str | None:
    """A note naming the trading days after the last test window (too few to fill another), or None."""
    days = dates[(dates >= pd.Timestamp(spec.start)) & (dates <= pd.Timestamp(spec.end))]
    tail = days[days > last.test_end]
    if not len(tail):
        return None
    return (f"note: the last {len(tail)} trading days ({tail[0].date()} to {tail[-1].date()}, "
            f"{len(tail) / len(days):.0%} of the range) are not evaluated: they do not fill another --test "
            f"window of {spec.test} bars")


def run_sweep(spec: SweepSpec, data: PriceData, index: pd.Series | None, executor: Executor, out: Path,
              progress: Callable[[int, int], Any] | None = None, echo: Callable[[str], None] = lambda _: None,
              fit_workers: int = 1) -> SweepOutcome:
    """Plan, compute the missing cells (saving each as it finishes), then write the sweep's files into ``out``."""
    windows, planned = plan(spec, data, index)
    store = cells.CellStore(out / "cells")
    unique = {c.key: c for c in planned.values()}
    results = {key: store.get(key) for key in unique}
    todo = [dataclasses.replace(unique[k], fit_workers=fit_workers) for k, r in results.items() if r is None]
    echo(f"{len(windows)} windows x {len(spec.param_sets)} parameter sets x 2 periods: {len(unique)} cells, "
         f"{len(unique) - len(todo)} already in {out}, {len(todo)} to compute on {executor.description}")
    dropped = unused_tail(data.closes.index, spec, windows[-1])
    if dropped:
        echo(dropped)
    bar = progress(len(unique), len(unique) - len(todo)) if progress else None
    try:
        with executor:
            for cell, result in executor.run(cells.evaluate_cell, todo):
                store.put(result)
                # read back as stored, so a fresh result and a reused one are the very same values
                results[cell.key] = json.loads(json.dumps(result))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    table, oos = assemble(spec, windows, planned, results)
    oos["cells"] = {"total": len(unique), "computed": len(todo), "reused": len(unique) - len(todo)}
    write_sweep_files(spec, table, oos, out)
    return SweepOutcome(table, oos, computed=len(todo), reused=len(unique) - len(todo))


def assemble(spec: SweepSpec, windows: list[Window], planned: dict[tuple, cells.Cell],
             results: dict[str, dict]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """results.csv's table (one row per window and parameter set) and the out-of-sample summary."""
    names = swept_names(spec.param_sets)
    params = spec.params()
    rows, oos_windows, curves = [], [], []
    for window in windows:
        window_rows = []
        for number in range(len(spec.param_sets)):
            row = {**window.as_dict(), "param_set": number, **{n: getattr(params[number], n) for n in names}}
            for segment in SEGMENTS:
                summary = results[planned[(window.number, number, segment)].key]["summary"]
                row.update({f"{segment}_{k}": v for k, v in cells.metrics_of(summary).items()})
            window_rows.append(row)
        train_only = [{k[len("train_"):]: v for k, v in r.items() if k.startswith("train_")} for r in window_rows]
        best = choose(train_only, spec.metric)
        for number, row in enumerate(window_rows):
            row["chosen"] = number == best
        rows += window_rows
        chosen = window_rows[best]
        test_result = results[planned[(window.number, best, "test")].key]
        curves.append(cells.equity_frame(test_result))
        oos_windows.append({
            **window.as_dict(),
            "param_set": best,
            "chosen": {n: getattr(params[best], n) for n in names},
            "train": {k[len("train_"):]: v for k, v in chosen.items() if k.startswith("train_")},
            "test": {k[len("test_"):]: v for k, v in chosen.items() if k.startswith("test_")},
        })
    table = pd.DataFrame(rows)
    stitched = stitch(curves)
    # Each parameter set's own out-of-sample record: its test windows stitched, as if it had been traded in all.
    per_set, set_returns = [], []
    for number in range(len(spec.param_sets)):
        own = stitch([cells.equity_frame(results[planned[(w.number, number, "test")].key]) for w in windows])
        perf = stitched_summary(own)
        set_returns.append(metrics.daily_returns(own["equity"]))
        per_set.append({"param_set": number, **{n: getattr(params[number], n) for n in names},
                        "oos_total_return": perf["total_return"], "oos_sharpe": perf["sharpe"],
                        "oos_max_drawdown": perf["max_drawdown"], "windows_chosen": int(
                            sum(w["param_set"] == number for w in oos_windows))})
    trial_sharpes = [overfitting.per_period_sharpe(r) for r in set_returns]
    best = max(range(len(per_set)), key=lambda k: (per_set[k]["oos_sharpe"], -k))
    oos = {
        "metric": spec.metric,
        "scheme": spec.scheme,
        "train_bars": spec.train,
        "test_bars": spec.test,
        "step_bars": spec.step or spec.test,
        "grid": spec.param_sets,
        "fixed": {k: v for k, v in params[0].to_dict().items() if k not in names},
        "windows": oos_windows,
        "stitched": stitched_summary(stitched),
        "per_set": per_set,
        # Selection bias: the walk-forward picked among len(grid) sets in every window, and a reader of the heatmap
        # picks its best cell; both Sharpe ratios deflated by the spread of all the sets' out-of-sample ones.
        "deflated_sharpe": {
            "walk_forward": overfitting.deflate(metrics.daily_returns(stitched["equity"]), trial_sharpes),
            "best_cell": {"param_set": best, **overfitting.deflate(set_returns[best], trial_sharpes)},
        },
        # How often the set best on half of the out-of-sample days ranks in the bottom half on the other half.
        "pbo": overfitting.pbo_cscv(pd.concat(set_returns, axis=1, ignore_index=True), blocks=PBO_BLOCKS),
    }
    oos["_stitched_curve"] = stitched
    return table, oos


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_sweep_files(spec: SweepSpec, table: pd.DataFrame, oos: dict[str, Any], out: Path) -> None:
    """results.csv, oos_summary.json, oos_equity.csv, oos_equity.png and heatmap.png, each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    curve = oos.pop("_stitched_curve")
    _atomic(out / "results.csv", lambda p: table.to_csv(p, index=False))
    _atomic(out / "oos_summary.json", lambda p: write_json(p, oos))
    _atomic(out / "oos_equity.csv", lambda p: curve.to_csv(p, index_label="date", date_format="%Y-%m-%d"))
    _atomic(out / "oos_equity.png", lambda p: write_oos_plot(curve, oos, p))
    axes = heatmap_axes(spec)
    _atomic(out / "heatmap.png", lambda p: write_heatmap(table, axes[0], axes[1], spec.metric, p,
                                                        pd.DataFrame(oos["per_set"]), lead_line(oos)))


def heatmap_axes(spec: SweepSpec) -> tuple[str, str | None]:
    """The heatmap's x and y parameters: ``spec.heatmap``, else the first two swept parameters."""
    names = swept_names(spec.param_sets)
    if spec.heatmap:
        missing = [n for n in spec.heatmap if n not in names]
        if missing:
            raise UserError(f"--heatmap {','.join(missing)} is not swept; swept parameters: {', '.join(names)}")
        axes = list(spec.heatmap)
    else:
        varying = [n for n in names if len({repr(s.get(n)) for s in spec.param_sets}) > 1]
        axes = (varying or names)[:2]
    return axes[0], (axes[1] if len(axes) > 1 else None)


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when there is one worth showing (not None, [] or False)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=110)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, [], False):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog="python -m backtests.sweep",
        description="Sweep a grid of strategy parameters walk-forward: per window choose the best parameters on "
        "train, report them on the following test period. Writes results.csv, oos_summary.json, oos_equity.csv, "
        "oos_equity.png (the stitched out-of-sample curve against the benchmark), heatmap.png and cells/ (one file per finished backtest; a rerun into the same --out reuses them).",
        formatter_class=_DefaultsShown,
        epilog="example: python -m backtests.sweep --grid band=0.0,0.01,0.02 --grid history=126,252 "
        "--train 252 --test 63 --out runs/sweep-band   (rerun the same command to resume; "
        "add --executor dask [--scheduler tcp://HOST:8786] to run on Dask). Exit codes: 0 done, 2 bad input, "
        "130 interrupted (finished cells are kept).",
    )
    g = p.add_argument_group("grid")
    g.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="values of one parameter (repeat for more); names as in StrategyParams, e.g. band, history")
    g.add_argument("--grid-file", type=Path, default=None, help="YAML or TOML file with 'grid' (and optional 'set')")
    g.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a fixed parameter (repeatable)")
    g.add_argument("--engine", choices=["stan", "exact"], default=None,
                   help="ProphetTrend's forecast engine (default: exact)")
    add_strategy_arguments(p, prophet_flags=False)
    d = p.add_argument_group("data and windows")
    d.add_argument("--data", default="sample", help="'sample' (bundled, offline), 'yfinance', or a CSV file")
    d.add_argument("--date-format", default=None, metavar="FORMAT",
                   help="a CSV file's date layout when not ISO 8601, e.g. %%d/%%m/%%Y (as in backtests.run)")
    d.add_argument("--symbols", default=None, help="comma-separated symbols (default: every symbol in the data)")
    d.add_argument("--start", default="2019-01-01", help="first day of the first train window (warm-up comes before)")
    d.add_argument("--end", default="2022-12-28", help="last day of the last test window")
    d.add_argument("--train", type=int, default=252, help="train window length in bars")
    d.add_argument("--test", type=int, default=63, help="test window length in bars")
    d.add_argument("--step", type=int, default=None, help="bars between window starts (default: --test)")
    d.add_argument("--scheme", choices=["rolling", "anchored"], default="rolling",
                   help="rolling: fixed-length train window; anchored: train always starts at --start")
    d.add_argument("--metric", choices=CHOICE_METRICS, default="sharpe", help="train metric that chooses")
    d.add_argument("--cash", type=float, default=100_000.0, help="starting cash of every cell")
    d.add_argument("--commission", type=float, default=0.001, help="commission as a fraction of traded value")
    d.add_argument("--benchmark", choices=["auto", "index", "equal-weight"], default="auto",
                   help="auto: the S&P 500 index with the sample, else equal-weight buy-and-hold")
    e = p.add_argument_group("execution and output")
    e.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: processes on this machine; dask: a Dask cluster (--scheduler) or a new LocalCluster")
    e.add_argument("--workers", type=int, default=None, help="local processes or LocalCluster workers (default: all cores)")
    e.add_argument("--fit-workers", type=int, default=1,
                   help="processes fitting each cell's exact Prophet models (the engine pool; same results)")
    e.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    e.add_argument("--heatmap", default=None, metavar="X,Y", help="two swept parameters for heatmap.png")
    e.add_argument("--out", type=Path, default=None, help="output folder; rerun into it to resume (default: runs/sweep-TIME)")
    e.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def spec_from_args(args) -> SweepSpec:
    config = config_from_args(args)  # --config, --strategy, --param, --name and the rules' flags
    cls = load_strategy(config.strategy)
    grids, fixed = [], {k: coerce(cls, k, v) for k, v in config.params.items()}
    if args.grid_file is not None:
        grids, from_file = load_grid_file(args.grid_file, cls)
        fixed.update(from_file)
    if args.grid:
        flags = parse_grid_flags(args.grid, cls)
        # flags refine a grid file (adding or replacing those parameters in each of its grids)
        grids = [{**g, **flags} for g in grids] if grids else [flags]
    fixed.update(parse_set_flags(args.set, cls))
    if args.engine:
        if not issubclass(cls, ProphetTrend):
            raise UserError(f"--engine is a prophet-trend flag; {cls.name} has no engine")
        fixed["engine"] = args.engine
    spec = SweepSpec(param_sets=expand(grids), fixed=fixed, start=args.start, end=args.end, train=args.train,
                     test=args.test, step=args.step, scheme=args.scheme, metric=args.metric, cash=args.cash,
                     commission=args.commission, benchmark=args.benchmark, strategy=config.strategy,
                     name=config.name, rules=config.rules,
                     heatmap=tuple(n.strip().replace("-", "_") for n in args.heatmap.split(",")) if args.heatmap else None)
    spec.params()  # every combination must be valid before anything runs
    heatmap_axes(spec)
    BacktestConfig(start=spec.start, end=spec.end, cash=spec.cash, commission=spec.commission)
    return spec


def check_out(out: Path) -> None:
    """A sweep folder may be reused (that is how it resumes); any other non-empty folder is refused."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "cells").is_dir():
        raise UserError(f"--out {out} holds files that are not a sweep; choose another folder")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = spec_from_args(args)
    out = args.out or Path("runs") / f"sweep-{datetime.now():%Y%m%d-%H%M%S}"
    check_out(out)
    data, index = load_data(args.data, args.symbols, date_format=args.date_format)
    spec = dataclasses.replace(spec, benchmark=resolve_benchmark(args.benchmark, index))
    executor = make_executor(args.executor, args.workers, args.scheduler)

    def bar(total: int, done: int):
        return progress(total, "sweep", enabled=False if args.quiet else None, unit="cell", initial=done)

    echo = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))
    t0 = time.perf_counter()
    if args.fit_workers < 1:
        raise UserError(f"--fit-workers must be at least 1, got {args.fit_workers}")
    outcome = run_sweep(spec, data, index, executor, out, progress=bar, echo=echo, fit_workers=args.fit_workers)
    if not args.quiet:
        print(format_oos(outcome.oos))
        print(f"wrote {out}/ (results.csv, oos_summary.json, oos_equity.csv, oos_equity.png, heatmap.png; {outcome.computed} cells "
              f"computed, {outcome.reused} reused) in {time.perf_counter() - t0:.0f}s")
    return 0


cli = guarded(main, DataError, StrategyError)

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
