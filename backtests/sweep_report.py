"""What a sweep leaves behind besides its cells: the heatmap, the out-of-sample plot and the printed verdict.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"window": [0, 0, 1, 1], "band": [0.0, 0.02, 0.0, 0.02],
    ...                       "train_sharpe": [1.0, 2.0, 3.0, 0.0], "test_sharpe": [0.5, 0.1, 0.3, 0.2]})
    >>> mean_grid(table, "band", None, "test_sharpe").round(2).to_dict("list")
    {'0.0': [0.4], '0.02': [0.15]}
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.figure import Figure  # a bare Figure: no pyplot, so importing this never switches a backend


_PER_SET_FIGURES = {"param_set", "oos_total_return", "oos_sharpe", "oos_max_drawdown", "windows_chosen"}


def _label(value: Any) -> str:
    return "none" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def mean_grid(table: pd.DataFrame, x: str, y: str | None, column: str) -> pd.DataFrame:
    """``column`` averaged over windows (and any other swept parameter): rows ``y`` values, columns ``x`` values."""
    xs = list(dict.fromkeys(_label(v) for v in table[x]))
    ys = list(dict.fromkeys(_label(v) for v in table[y])) if y else [""]
    frame = pd.DataFrame({"x": table[x].map(_label), "y": table[y].map(_label) if y else "", "v": table[column]})
    means = frame.groupby(["y", "x"], sort=False)["v"].mean()
    return pd.DataFrame([[means.get((yy, xx), np.nan) for xx in xs] for yy in ys], index=ys, columns=xs)


def chosen_grid(table: pd.DataFrame, x: str, y: str | None) -> pd.DataFrame:
    """How many windows chose each (``x``, ``y``) cell (the ``chosen`` rows), shaped like :func:`mean_grid`.

    >>> t = pd.DataFrame({"window": [0, 0, 1, 1], "band": [0.0, 0.02, 0.0, 0.02], "chosen": [False, True, False, True]})
    >>> chosen_grid(t, "band", None).to_dict("list")
    {'0.0': [0], '0.02': [2]}
    """
    frame = table.assign(_n=table["chosen"].astype(bool).astype(int))
    xs = list(dict.fromkeys(_label(v) for v in frame[x]))
    ys = list(dict.fromkeys(_label(v) for v in frame[y])) if y else [""]
    keyed = pd.DataFrame({"x": frame[x].map(_label), "y": frame[y].map(_label) if y else "", "n": frame["_n"]})
    sums = keyed.groupby(["y", "x"], sort=False)["n"].sum()
    return pd.DataFrame([[int(sums.get((yy, xx), 0)) for xx in xs] for yy in ys], index=ys, columns=xs)


def write_heatmap(table: pd.DataFrame, x: str, y: str | None, metric: str, path: Path,
                  per_set: pd.DataFrame | None = None, lead: str | None = None) -> Path:
    """Two panels. Train: the mean over windows of each window's train ``metric`` (what the choice saw). Out of
    sample: each cell's own stitched result, its test windows chained as if it had been traded in all of them:
    the Sharpe ratio (the colour) and the total return (``per_set``, from :func:`backtests.sweep.assemble`;
    where other parameters are swept too, a cell is the mean over them). Cells that some window chose are
    outlined and say how many windows chose them. ``lead``: the walk-forward's own result, the title's first line."""
    if per_set is None or not len(per_set):  # no stitched results given: fall back to the per-window means
        test = ("mean of per-window test " + metric, mean_grid(table, x, y, f"test_{metric}"), None)
    else:
        test = ("out of sample, stitched over all test windows: Sharpe (return)",
                mean_grid(per_set, x, y, "oos_sharpe"), mean_grid(per_set, x, y, "oos_total_return"))
    panels = [(f"train: mean of per-window {metric}", mean_grid(table, x, y, f"train_{metric}"), None), test]
    chosen = chosen_grid(table, x, y) if "chosen" in table else None
    windows = int(table["window"].nunique()) if "window" in table else 0
    cols, rows = panels[0][1].shape[1], panels[0][1].shape[0]
    fig = Figure(figsize=(max(11.0, 2.6 + 1.4 * cols * 2), max(4.0, 2.4 + 0.7 * rows)), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (title, grid, returns) in zip(axes, panels):
        values = grid.to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if high == low:
            low, high = low - 0.5, high + 0.5
        image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel(x)
        ax.set_ylabel(y or "" if ax is axes[0] else "")
        ax.set_title(title, fontsize=10)
        for (i, j), value in np.ndenumerate(values):
            times = int(chosen.iat[i, j]) if chosen is not None else 0
            text = "" if np.isnan(value) else f"{value:.2f}"
            if returns is not None and np.isfinite(returns.iat[i, j]):
                text += f" ({returns.iat[i, j]:+.1%})"
            if times:
                text += f"\nchosen {times}/{windows}"
                ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, edgecolor="red", lw=2.5))  # inset: neighbours never share an edge
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if value < (low + high) / 2 else "black", fontsize=9)
    note = ("red outline: the cell a window chose on train (count of windows); the walk-forward's stitched curve "
            "is in oos_equity.png")
    lead = "\n".join(textwrap.wrap(lead, 130)) if lead else None  # a long title wrapped, never cut at the edge
    fig.suptitle(f"{lead}\n{note}" if lead else note, fontsize=9)
    fig.savefig(path, dpi=100)
    return path


def write_oos_plot(curve: pd.DataFrame, oos: dict[str, Any], path: Path) -> Path:
    """``oos_equity.png``: the stitched out-of-sample equity against the benchmark over the same days, each test
    window shaded and labelled with the parameters it chose, and the stitched drawdown below."""
    from backtests.metrics import drawdown

    s, b = oos["stitched"], oos["stitched"]["benchmark"]
    fig = Figure(figsize=(11, 6), layout="constrained")
    ax, ad = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2])
    ax.plot(curve.index, curve["equity"], lw=1.5,
            label=f"stitched out of sample ({s['total_return']:+.1%}, Sharpe {s['sharpe']:.2f}, "
                  f"max drawdown {s['max_drawdown']:.1%})")
    ax.plot(curve.index, curve["benchmark"], lw=1.1, color="grey",
            label=f"benchmark ({b['total_return']:+.1%}, Sharpe {b['sharpe']:.2f})")
    labels = {w["window"]: ", ".join(f"{k}={_label(v)}" for k, v in w["chosen"].items()) for w in oos["windows"]}
    for number, piece in curve.groupby("window", sort=True):
        if number % 2 == 0:
            for a in (ax, ad):
                a.axvspan(piece.index[0], piece.index[-1], color="tab:blue", alpha=0.06, lw=0)
        ax.text(piece.index[0], 1.0, f" w{number}: {labels.get(int(number), '')}", transform=ax.get_xaxis_transform(),
                va="top", fontsize=7, rotation=90, color="dimgrey")
    ax.set_title(f"stitched out of sample {s['start']} to {s['end']} ({s['bars']} bars): each test window traded "
                 "with the parameters its train window chose", fontsize=10)
    ax.set_ylabel("equity")
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(alpha=0.3)
    ad.fill_between(curve.index, -drawdown(curve["equity"].astype("float64")), 0, color="tab:red", alpha=0.4)
    ad.plot(curve.index, -drawdown(curve["benchmark"].astype("float64")), color="grey", lw=1)
    ad.set_ylabel("drawdown")
    ad.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return path


def lead_line(oos: dict[str, Any]) -> str:
    """The walk-forward's stitched out-of-sample result in one line (the heatmap's title leads with it)."""
    s = oos["stitched"]
    d = oos.get("deflated_sharpe", {}).get("walk_forward")
    return (f"walk-forward (parameters chosen per window on train), stitched out of sample {s['start']} to {s['end']}: "
            f"return {s['total_return']:+.2%}, Sharpe {s['sharpe']:.2f}"
            + (f", deflated Sharpe ratio {d['deflated_sharpe']:.2f}" if d else ""))


def format_oos(oos: dict[str, Any]) -> str:
    """The verdict: the stitched out-of-sample result first, then one line per window, then per-window means
    (labelled as such: they are not the result of trading the walk-forward)."""
    metric = oos["metric"]
    s = oos["stitched"]
    b = s["benchmark"]
    lines = [f"Out of sample, stitched {s['start']} to {s['end']} ({s['bars']} bars, {len(oos['windows'])} test "
             f"windows, parameters chosen by train {metric}):",
             f"  return {s['total_return']:+.2%}, Sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%}; "
             f"benchmark {b['total_return']:+.2%}, Sharpe {b['sharpe']:.2f}, max drawdown {b['max_drawdown']:.2%}",
             f"Per window ({oos['scheme']}, train {oos['train_bars']} bars, test {oos['test_bars']} bars):"]
    header = f"{'win':>3}  {'test period':<23}  {'chosen':<34}  {'train ' + metric:>12}  {'test ' + metric:>11}  " \
             f"{'test return':>11}  {'benchmark':>9}"
    lines.append(header)
    for w in oos["windows"]:
        chosen = ", ".join(f"{k}={_label(v)}" for k, v in w["chosen"].items())
        lines.append(f"{w['window']:>3}  {w['test_start']} {w['test_end']}  {chosen:<34.34}  "
                     f"{w['train'][metric]:>12.3f}  {w['test'][metric]:>11.3f}  {w['test']['total_return']:>+11.2%}  "
                     f"{w['test']['benchmark_total_return']:>+9.2%}")
    d = oos.get("deflated_sharpe")
    if d:
        wf, best = d["walk_forward"], d["best_cell"]
        lines.insert(2, f"  deflated Sharpe ratio (Bailey and Lopez de Prado, {wf['trials']} parameter sets): "
                        f"{wf['deflated_sharpe']:.2f}, the probability that its true Sharpe beats the best of "
                        f"{wf['trials']} unskilled trials (expected best {wf['expected_max_sharpe'] * 252 ** 0.5:.2f} "
                        f"annualised)")
        cell = oos["per_set"][best["param_set"]]
        names = ", ".join(f"{k}={_label(v)}" for k, v in cell.items() if k not in _PER_SET_FIGURES)
        lines.insert(3, f"  best heatmap cell ({names}): stitched out of sample {cell['oos_total_return']:+.2%}, "
                        f"Sharpe {cell['oos_sharpe']:.2f}; deflated Sharpe ratio {best['deflated_sharpe']:.2f} "
                        "(it was picked as the best of them)")
    pbo = oos.get("pbo")
    if pbo and pbo.get("splits"):
        lines.insert(4 if d else 2, f"  probability of backtest overfitting (CSCV, {pbo['blocks']} blocks of the out-of-sample "
                                    f"days, {pbo['splits']} splits, {pbo['trials']} sets): {pbo['pbo']:.2f}, how often the "
                                    "set best on one half ranks in the bottom half on the other")
    if oos["windows"]:
        def mean(part: str, key: str) -> float:
            return float(np.mean([w[part][key] for w in oos["windows"]]))

        lines.append(f"per-window means of the chosen sets (not the stitched result): train {metric} "
                     f"{mean('train', metric):.3f}, test {metric} {mean('test', metric):.3f}, test return "
                     f"{mean('test', 'total_return'):+.2%}")
    return "\n".join(lines)
