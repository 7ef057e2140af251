"""Top-N momentum selection of the candidate universe.

Example:
    >>> import pandas as pd
    >>> idx = pd.bdate_range("2022-01-03", periods=4)
    >>> closes = pd.DataFrame({"UP": [1, 2, 3, 4.0], "DOWN": [4, 3, 2, 1.0]}, index=idx)
    >>> top_n_by_momentum(closes, n=1, lookback=3)
    ['UP']
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def momentum(closes: pd.DataFrame, lookback: int) -> pd.Series:
    """Return over the last ``lookback`` bars at the last row; NaN where a symbol lacks the bars or today's close."""
    if len(closes) <= lookback:
        return pd.Series(np.nan, index=closes.columns, dtype="float64")
    now = closes.iloc[-1]
    then = closes.iloc[-1 - lookback]
    return (now / then - 1.0).astype("float64")


def top_n_by_momentum(closes: pd.DataFrame, n: int, lookback: int, min_history: int = 0) -> list[str]:
    """The ``n`` symbols with the highest momentum (ties broken by symbol), among those with ``min_history`` closes."""
    scores = momentum(closes, lookback)
    if min_history:
        scores = scores[closes.notna().sum() >= min_history]
    scores = scores.dropna()
    ranked = sorted(scores.items(), key=lambda item: (-item[1], str(item[0])))
    return [str(symbol) for symbol, _ in ranked[:n]]


def top_n_mask(closes: pd.DataFrame, n: int, lookback: int, min_history: int = 0, window: int | None = None,
               ) -> pd.DataFrame:
    """For every row t at once: is the symbol in ``top_n_by_momentum`` of the ``window`` rows ending at t?

    Row t is exactly the set ``top_n_by_momentum(closes.iloc[max(0, t + 1 - window):t + 1], ...)`` returns
    (``window`` None: all rows up to t), computed with a few array operations over the whole history instead of
    one ranking per bar: the same ratio, the same count of closes, the same order (score descending, ties by
    symbol). A home uses it to give feeds only to the names a decision could ever rank.

    >>> idx = pd.bdate_range("2022-01-03", periods=4)
    >>> closes = pd.DataFrame({"UP": [1, 2, 3, 4.0], "DOWN": [4, 3, 2, 1.0]}, index=idx)
    >>> top_n_mask(closes, n=1, lookback=2).astype(int).to_dict("list")
    {'UP': [0, 0, 1, 1], 'DOWN': [0, 0, 0, 0]}
    >>> all(top_n_mask(closes, 1, 2).iloc[t][lambda s: s].index.tolist() == top_n_by_momentum(closes.iloc[:t + 1], 1, 2)
    ...     for t in range(4))
    True
    """
    values = closes.to_numpy(dtype="float64")
    rows, cols = values.shape
    mask = np.zeros((rows, cols), dtype=bool)
    if rows == 0 or cols == 0:
        return pd.DataFrame(mask, index=closes.index, columns=closes.columns)
    scores = np.full((rows, cols), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores[lookback:] = values[lookback:] / values[:-lookback] - 1.0
    if window is not None and window <= lookback:  # momentum needs more than ``lookback`` rows in the window
        scores[:] = np.nan
    if min_history:
        counts = np.cumsum(~np.isnan(values), axis=0)
        if window is not None and window < rows:
            counts[window:] = counts[window:] - counts[:-window]
        scores[counts < min_history] = np.nan
    # Columns in symbol order, then a stable sort on the negated score: ties keep symbol order; NaN sorts last.
    names = [str(c) for c in closes.columns]
    order = np.array(sorted(range(cols), key=names.__getitem__), dtype=np.intp)
    ordered = -scores[:, order]
    ranks = np.argsort(ordered, axis=1, kind="stable")[:, :n]
    picked = order[ranks]
    valid = ~np.isnan(np.take_along_axis(ordered, ranks, axis=1))
    row_ids = np.broadcast_to(np.arange(rows)[:, None], picked.shape)
    mask[row_ids[valid], picked[valid]] = True
    return pd.DataFrame(mask, index=closes.index, columns=closes.columns)
