"""One sweep cell: a backtest of one parameter set over one train or test period, and where its result is kept.

A cell's key is a hash of everything its result depends on: the parameters, the period, the money and costs,
the very rows it is given (warm-up included, nothing after the period's last day), and the code that computes it
(the strategy and backtest sources, Prophet's and Backtrader's versions). So a finished cell is never recomputed,
a change to prices after a period leaves that period's cells untouched, and a change to the strategy's code
invalidates them all.

Example:
    >>> from marketdata import load_sample
    >>> from strategies import StrategyParams
    >>> data = load_sample().select(["AAPL", "KO"])
    >>> cell = make_cell(data, None, StrategyParams(top_n=1, history=60, refit_every=10),
    ...                  BacktestConfig(start="2022-12-01", end="2022-12-28"))
    >>> len(cell.key), len(cell.data.closes) == cell.params.warmup_bars + 19
    (16, True)
    >>> evaluate_cell(cell)["summary"]["bars"]
    19
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from backtests.backtest import BacktestConfig, as_strategy, run_backtest, window_for
from marketdata.prices import PriceData, content_hash
from strategies.engines.pool import ExactPool
from strategies.forecaster import Forecaster, settings_for
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend

# summary.json entries that describe the run rather than measure it; kept out of results.csv.
_NOT_METRICS = {"start", "end", "bars", "symbols", "params", "config", "data", "benchmark", "wall_seconds",
                "strategy", "rules", "skipped_orders"}


@dataclass(frozen=True)
class StrategySpec:
    """Any strategy as a picklable value (a cell travels to worker processes and Dask): spec, params and name.

    >>> s = StrategySpec("ma-crossover", (("fast", 5),))
    >>> s.fast, s.warmup_bars, s.to_dict()["slow"]
    (5, 50, 50)
    """

    spec: str
    items: tuple[tuple[str, Any], ...] = ()
    name: str | None = None

    def build(self):
        from strategies.loader import build_strategy

        return build_strategy(self.spec, dict(self.items), name=self.name)

    @property
    def warmup_bars(self) -> int:
        return self.build().warmup_bars

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.build().params)

    def __getattr__(self, item: str) -> Any:  # a swept parameter's value, as on StrategyParams
        if item.startswith("_") or item in ("spec", "items", "name"):
            raise AttributeError(item)
        values = self.to_dict()
        if item in values:
            return values[item]
        raise AttributeError(item)


@dataclass(frozen=True)
class Cell:
    """A self-contained task: ``data`` holds exactly the rows the backtest reads (warm-up through period end)."""

    key: str
    params: StrategyParams | StrategySpec
    config: BacktestConfig
    data: PriceData
    index: pd.Series | None
    fit_workers: int = 1  # ProphetTrend's exact fits on this many processes (strategies.engines.pool): not in the key,
    # the pool's forecasts are the single process's, bit for bit


_ROOT = Path(__file__).resolve().parent.parent
# Sources whose change can change a backtest's numbers (the sweep's own bookkeeping is not among them).
_CODE = ["strategies/**/*.py", "marketdata/prices.py", "backtests/backtest.py", "backtests/metrics.py"]


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the strategy and backtest sources and of the versions of the libraries they lean on."""
    digest = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(_ROOT.glob(pattern)):
            digest.update(path.relative_to(_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    for package in ("prophet", "cmdstanpy", "backtrader", "numpy", "pandas", "scipy"):
        try:
            digest.update(f"{package}=={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    return digest.hexdigest()[:16]


def make_cell(data: PriceData, index: pd.Series | None, params: StrategyParams | StrategySpec,
              config: BacktestConfig) -> Cell:
    """The cell backtesting ``params`` over ``config``'s period; raises ``DataError`` if warm-up rows are missing."""
    rows = window_for(data, params, config)
    bench = None if index is None else index.loc[rows.closes.index[0]:rows.closes.index[-1]]
    identity = {
        "params": params.to_dict(),
        **({"strategy": params.spec, "name": params.name} if isinstance(params, StrategySpec) else {}),
        "config": {**asdict(config), "start": config.start_ts.date().isoformat(),
                   "end": config.end_ts.date().isoformat()},
        "rows": content_hash([rows.closes, rows.opens]),
        "index": None if bench is None else content_hash([bench.to_frame()]),
        "code": code_fingerprint(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Cell(key, params, config, rows, bench)


def evaluate_cell(cell: Cell) -> dict[str, Any]:
    """Run the cell's backtest; returns the summary and the daily equity curve as plain JSON-ready values."""
    strategy = as_strategy(cell.params.build() if isinstance(cell.params, StrategySpec) else cell.params)
    pool = None
    if cell.fit_workers > 1 and isinstance(strategy, ProphetTrend) and strategy.params.engine == "exact":
        pool = ExactPool(settings_for(strategy.params), workers=cell.fit_workers)
        strategy.forecaster = Forecaster(strategy.params, engine=pool)
    try:
        result = run_backtest(cell.data, strategy, cell.config, index=cell.index)
    finally:
        if pool is not None:
            pool.close()
    summary = dict(result.summary)
    summary.pop("data", None)  # provenance of the sliced rows; the key already pins them
    equity = result.equity
    return {
        "key": cell.key,
        "summary": summary,
        "equity": {
            "date": [d.date().isoformat() for d in equity.index],
            "equity": [float(v) for v in equity["equity"]],
            "benchmark": [float(v) for v in equity["benchmark"]],
        },
    }


def metrics_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a summary.json as flat columns: strategy metrics, then ``benchmark_*``, ``excess_return``."""
    flat = {k: v for k, v in summary.items() if k not in _NOT_METRICS}
    for k, v in summary.get("benchmark", {}).items():
        if k != "name":
            flat[f"benchmark_{k}"] = v
    flat["excess_return"] = summary["total_return"] - summary["benchmark"]["total_return"]
    return flat


def equity_frame(result: dict[str, Any]) -> pd.DataFrame:
    """A cell result's equity curve as a frame indexed by date."""
    eq = result["equity"]
    return pd.DataFrame({"equity": eq["equity"], "benchmark": eq["benchmark"]},
                        index=pd.DatetimeIndex(pd.to_datetime(eq["date"]), name="date"))


class CellStore:
    """Finished cells as one small JSON file each under ``folder``, written atomically (temp file + rename)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # cannot happen with atomic writes; a damaged file is simply recomputed
            return None

    def put(self, result: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{result['key']}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(result, handle)
            os.replace(tmp, self.path(result["key"]))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
