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


# -- intraday bars: a session-time axis --------------------------------------------------------------------------

_OPEN_MINUTE = 9 * 60 + 30  # 09:30 New York: intraday stamps are naive New York bar starts (marketdata.bars)


def bars_per_session(bar_minutes: int) -> int:
    """Slots of a full 390-minute session for bars of ``bar_minutes`` (the 1h bars start 09:30 ... 15:30: 7)."""
    return -(-390 // bar_minutes)


def session_bar_numbers(stamps: pd.DatetimeIndex, bar_minutes: int) -> np.ndarray:
    """A bar's number on the session-time axis: business days since the epoch times bars per session, plus the
    bar's place in its session. Overnight and weekend gaps vanish (15:45 is followed by 09:30 the next business
    day); a holiday or an early close's afternoon leaves a gap of unused numbers. A pure function of the stamp,
    so the backtest and a stateless live cycle number the same bar alike.

    >>> session_bar_numbers(pd.DatetimeIndex(["2022-01-07 15:45", "2022-01-10 09:30"]), 15).tolist()
    [352819, 352820]
    """
    stamps = pd.DatetimeIndex(stamps)
    days = np.busday_count(_EPOCH, np.asarray(stamps.values.astype("datetime64[D]")))
    minute = stamps.hour.to_numpy() * 60 + stamps.minute.to_numpy()
    return days.astype(np.int64) * bars_per_session(bar_minutes) + (minute - _OPEN_MINUTE) // bar_minutes


def session_bar_stamps(numbers: np.ndarray, bar_minutes: int) -> pd.DatetimeIndex:
    """The bar start of each session-bar number (inverse of :func:`session_bar_numbers`).

    >>> [str(t) for t in session_bar_stamps(np.array([352819, 352820]), 15)]
    ['2022-01-07 15:45:00', '2022-01-10 09:30:00']
    """
    per = bars_per_session(bar_minutes)
    numbers = np.asarray(numbers, dtype=np.int64)
    days = np.busday_offset(_EPOCH, numbers // per, roll="forward")
    minutes = _OPEN_MINUTE + (numbers % per) * bar_minutes
    return pd.DatetimeIndex(days.astype("datetime64[ns]") + minutes.astype("timedelta64[m]"))


def session_axis(numbers: np.ndarray) -> pd.DatetimeIndex:
    """Session-bar numbers as evenly spaced stand-in dates (one minute apart) for Prophet's ``ds``."""
    return pd.DatetimeIndex(_EPOCH.astype("datetime64[ns]") + np.asarray(numbers, dtype=np.int64).astype("timedelta64[m]"))
