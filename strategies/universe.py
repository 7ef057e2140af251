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
