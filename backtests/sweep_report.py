"""What a sweep leaves behind besides its cells: the heatmap and the printed out-of-sample summary.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"window": [0, 0, 1, 1], "band": [0.0, 0.02, 0.0, 0.02],
    ...                       "train_sharpe": [1.0, 2.0, 3.0, 0.0], "test_sharpe": [0.5, 0.1, 0.3, 0.2]})
    >>> mean_grid(table, "band", None, "test_sharpe").round(2).to_dict("list")
    {'0.0': [0.4], '0.02': [0.15]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # a bare Figure: no pyplot, so importing this never switches a backend


def _label(value: Any) -> str:
    return "none" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def mean_grid(table: pd.DataFrame, x: str, y: str | None, column: str) -> pd.DataFrame:
    """``column`` averaged over windows (and any other swept parameter): rows ``y`` values, columns ``x`` values."""
    xs = list(dict.fromkeys(_label(v) for v in table[x]))
    ys = list(dict.fromkeys(_label(v) for v in table[y])) if y else [""]
    frame = pd.DataFrame({"x": table[x].map(_label), "y": table[y].map(_label) if y else "", "v": table[column]})
    means = frame.groupby(["y", "x"], sort=False)["v"].mean()
    return pd.DataFrame([[means.get((yy, xx), np.nan) for xx in xs] for yy in ys], index=ys, columns=xs)


def write_heatmap(table: pd.DataFrame, x: str, y: str | None, metric: str, path: Path) -> Path:
    """Two panels, train and test: ``metric`` averaged over windows for each (``x``, ``y``) pair."""
    panels = [("train", mean_grid(table, x, y, f"train_{metric}")), ("test (out of sample)",
                                                                    mean_grid(table, x, y, f"test_{metric}"))]
    finite = np.concatenate([p.to_numpy(dtype="float64").ravel() for _, p in panels])
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    cols, rows = panels[0][1].shape[1], panels[0][1].shape[0]
    fig = Figure(figsize=(max(8.0, 2.2 + 1.3 * cols * 2), max(3.2, 1.8 + 0.6 * rows)), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (title, grid) in zip(axes, panels):
        image = ax.imshow(grid.to_numpy(dtype="float64"), cmap="viridis", vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel(x)
        ax.set_ylabel(y or "" if ax is axes[0] else "")
        ax.set_title(f"mean {metric}, {title}")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype="float64")):
            ax.text(j, i, "" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="white" if value < (low + high) / 2 else "black", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.savefig(path, dpi=100)
    return path


def format_oos(oos: dict[str, Any]) -> str:
    """The out-of-sample summary as a table: one line per window, then the stitched test periods."""
    metric = oos["metric"]
    lines = [f"Walk-forward ({oos['scheme']}, train {oos['train_bars']} bars, test {oos['test_bars']} bars), "
             f"chosen by train {metric}:"]
    header = f"{'win':>3}  {'test period':<23}  {'chosen':<34}  {'train ' + metric:>12}  {'test ' + metric:>11}  " \
             f"{'test return':>11}  {'benchmark':>9}"
    lines.append(header)
    for w in oos["windows"]:
        chosen = ", ".join(f"{k}={_label(v)}" for k, v in w["chosen"].items())
        lines.append(f"{w['window']:>3}  {w['test_start']} {w['test_end']}  {chosen:<34.34}  "
                     f"{w['train'][metric]:>12.3f}  {w['test'][metric]:>11.3f}  {w['test']['total_return']:>+11.2%}  "
                     f"{w['test']['benchmark_total_return']:>+9.2%}")
    s = oos["stitched"]
    b = s["benchmark"]
    lines.append(f"stitched out of sample {s['start']} to {s['end']} ({s['bars']} bars): return {s['total_return']:+.2%}, "
                 f"Sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%}; benchmark {b['total_return']:+.2%}, "
                 f"Sharpe {b['sharpe']:.2f}")
    return "\n".join(lines)
