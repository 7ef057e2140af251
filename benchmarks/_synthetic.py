"""SYNTHETIC prices for the benchmarks (never market data): seeded random walks on business days, as a CSV.

Each symbol gets its own drift and volatility (and optionally missing closes), so that the ranking, the forecasts and
the trades all have work to do. The files are plain wide CSVs (``date`` then one close column per symbol) that
``python -m backtests.run --data FILE`` reads like any user's file.

Example:
    >>> frame = daily_frame(3, "2022-01-03", "2022-01-14")
    >>> frame.shape, list(frame.columns)
    ((10, 3), ['SYN000', 'SYN001', 'SYN002'])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def daily_frame(n_symbols: int, start: str, end: str, seed: int = 5, missing: float = 0.0) -> pd.DataFrame:
    """Closes on business days from ``start`` to ``end`` for ``n_symbols`` symbols ``SYN000``...; a share
    ``missing`` of them NaN (the base release fills orders at a missing price, so the benchmarks keep them all)."""
    index = pd.bdate_range(start, end, name="date")
    columns = []
    for i in range(n_symbols):  # one generator per symbol: the first k symbols of any file are the same k series
        rng = np.random.default_rng([seed, i])
        steps = rng.standard_normal(len(index)) * rng.uniform(0.008, 0.03) + rng.normal(0.0002, 0.0006)
        close = np.round(rng.uniform(20, 300) * np.exp(np.cumsum(steps)), 2)
        close[rng.random(len(index)) < missing] = np.nan
        columns.append(close)
    closes = np.column_stack(columns) if columns else np.empty((len(index), 0))
    return pd.DataFrame(closes, index=index, columns=[f"SYN{i:03d}" for i in range(n_symbols)])


def write_daily_csv(path: Path, n_symbols: int, start: str, end: str, seed: int = 5) -> Path:
    """Write :func:`daily_frame` as a wide CSV at ``path`` (reused when it exists with the same name), on NYSE
    sessions only: a CSV's daily rows must be sessions (``marketdata.csvfile`` refuses a holiday)."""
    from marketdata.bars import session_hours

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = daily_frame(n_symbols, start, end, seed)
        sessions = session_hours(frame.index[0].date(), frame.index[-1].date()).index
        frame[frame.index.isin(sessions)].to_csv(path, date_format="%Y-%m-%d")
    return path
