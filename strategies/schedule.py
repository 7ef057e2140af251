"""When Prophet is refitted and which date a forecast is read at: pure calendar arithmetic.

Refits happen on the first bar of each block of ``refit_every`` business days counted from a fixed epoch, so the
backtest (which walks bar by bar) and a stateless Lambda invocation (which sees only today's history) pick the
same refit bar, and so fit the same model on the same rows.

Example:
    >>> import pandas as pd
    >>> dates = pd.bdate_range("2022-01-03", periods=8)
    >>> dates[refit_anchor(dates, 5)].date().isoformat()
    '2022-01-10'
    >>> forecast_date(pd.Timestamp("2022-01-07"), 1).date().isoformat()
    '2022-01-10'
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_EPOCH = np.datetime64("1970-01-05", "D")  # a Monday


def refit_blocks(dates: pd.DatetimeIndex, every: int) -> np.ndarray:
    """Block number of each date; a new block starts every ``every`` business days after the epoch."""
    days = np.asarray(dates.values.astype("datetime64[D]"))
    return np.busday_count(_EPOCH, days) // every


def refit_anchor(dates: pd.DatetimeIndex, every: int) -> int:
    """Position of the bar whose model serves the last bar: the first bar of the last bar's block."""
    blocks = refit_blocks(dates, every)
    return int(np.searchsorted(blocks, blocks[-1], side="left"))


def forecast_date(as_of: pd.Timestamp, horizon: int) -> pd.Timestamp:
    """The business day ``horizon`` days after ``as_of`` (exchange holidays are not skipped)."""
    day = np.busday_offset(np.datetime64(as_of.date(), "D"), horizon, roll="forward")
    return pd.Timestamp(day)


def forecast_dates(anchor: pd.Timestamp, horizon: int, every: int) -> pd.DatetimeIndex:
    """Every date a model fitted at ``anchor`` may be asked for before the next refit."""
    first = np.busday_offset(np.datetime64(anchor.date(), "D"), 0, roll="forward")
    days = np.busday_offset(first, np.arange(horizon, horizon + every), roll="forward")
    return pd.DatetimeIndex(days)
