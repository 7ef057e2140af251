"""Bar sizes and the New York session: what an intraday bar's timestamp means and which bars belong to a session.

Intraday bars are stamped with the **start** of the bar in New York wall-clock time, without a timezone (the
daily index is naive dates; an intraday index is naive ``America/New_York`` timestamps: no bar of 04:00-20:00
falls in a daylight-saving fold, so the wall clock is unambiguous). A 15-minute bar stamped 09:30 covers
09:30 up to 09:45 and is complete at 09:45.

Regular hours are the XNYS sessions of ``exchange_calendars`` (holidays and early closes included), read from the
session table of :mod:`marketdata.sessions`: a bar belongs to a session when it starts at or after the open and
before the close. Extended hours (opt-in) are 04:00 to 20:00 New York time on session days (17:00 after an early
close, when the post-market ends early too).

Example:
    >>> parse_interval("60m").name, parse_interval("15m").minutes, parse_interval("1d").intraday
    ('1h', 15, False)
    >>> import pandas as pd
    >>> stamps = pd.DatetimeIndex(["2022-11-25 12:45", "2022-11-25 13:00", "2022-11-28 09:15", "2022-11-28 09:30"])
    >>> [str(t) for t in outside_session(stamps)]          # 13:00 is after the early close; 09:15 before the open
    ['2022-11-25 13:00:00', '2022-11-28 09:15:00']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketdata.errors import DataError
from marketdata.sessions import session_table

NEW_YORK = "America/New_York"
_EXTENDED_OPEN = dt.time(4, 0)
_EXTENDED_CLOSE = dt.time(20, 0)
_EARLY_CLOSE_POST = dt.time(17, 0)


@dataclass(frozen=True)
class Interval:
    """One bar size: ``name`` as the project writes it (``1m 5m 15m 1h 1d``) and its length in minutes."""

    name: str
    minutes: int

    @property
    def intraday(self) -> bool:
        return self.name != "1d"

    @property
    def length(self) -> pd.Timedelta:
        return pd.Timedelta(minutes=self.minutes)


INTERVALS: dict[str, Interval] = {i.name: i for i in (
    Interval("1m", 1), Interval("5m", 5), Interval("15m", 15), Interval("1h", 60), Interval("1d", 390))}
_ALIASES = {"60m": "1h", "1min": "1m", "5min": "5m", "15min": "15m", "60min": "1h", "1hour": "1h", "1day": "1d",
            "day": "1d", "daily": "1d"}


def parse_interval(text: str | Interval) -> Interval:
    """The :class:`Interval` named by ``text`` (``1m``, ``5m``, ``15m``, ``1h`` or ``60m``, ``1d``).

    >>> parse_interval("2h")
    Traceback (most recent call last):
    ...
    marketdata.errors.DataError: unknown interval '2h': use 1m, 5m, 15m, 1h (60m) or 1d
    """
    if isinstance(text, Interval):
        return text
    key = str(text or "").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in INTERVALS:
        raise DataError(f"unknown interval {text!r}: use 1m, 5m, 15m, 1h (60m) or 1d")
    return INTERVALS[key]


def session_hours(first: dt.date, last: dt.date, *, extended: bool = False) -> pd.DataFrame:
    """Per session day from ``first`` to ``last``: ``open`` and ``close`` as naive New York timestamps.

    >>> session_hours(dt.date(2022, 11, 24), dt.date(2022, 11, 25)).astype(str).to_dict("records")
    [{'open': '2022-11-25 09:30:00', 'close': '2022-11-25 13:00:00'}]
    """
    table = session_table()
    rows = table.span(pd.Timestamp(first).date(), pd.Timestamp(last).date())
    days = pd.DatetimeIndex(table.days[rows].astype("datetime64[ns]"), name="date")
    opens = _new_york_naive_ns(table.opens[rows])
    closes = _new_york_naive_ns(table.closes[rows])
    if extended:
        early = (closes - days.to_numpy()) < np.timedelta64(16, "h")
        opens = (days + pd.Timedelta(hours=4)).to_numpy()
        closes = (days + pd.to_timedelta(np.where(early, pd.Timedelta(hours=17), pd.Timedelta(hours=20)))).to_numpy()
    return pd.DataFrame({"open": opens, "close": closes}, index=days)


def _new_york_naive_ns(utc_ns: np.ndarray) -> np.ndarray:
    return pd.DatetimeIndex(utc_ns.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(NEW_YORK).tz_localize(None).to_numpy()


def in_session(stamps: pd.DatetimeIndex, *, extended: bool = False) -> np.ndarray:
    """A boolean mask: which bar start times fall inside a session (``open <= t < close``)."""
    stamps = pd.DatetimeIndex(stamps)
    if len(stamps) == 0:
        return np.zeros(0, dtype=bool)
    hours = session_hours(stamps.min().date(), stamps.max().date(), extended=extended)
    days = stamps.normalize()
    opens = pd.Series(hours["open"].to_numpy(), index=hours.index).reindex(days).to_numpy()
    closes = pd.Series(hours["close"].to_numpy(), index=hours.index).reindex(days).to_numpy()
    values = stamps.to_numpy()
    with np.errstate(invalid="ignore"):
        return ~pd.isna(opens) & (values >= opens) & (values < closes)


def outside_session(stamps: pd.DatetimeIndex, *, extended: bool = False) -> pd.DatetimeIndex:
    """The timestamps that fall outside every session (weekends, holidays, before the open, after the close)."""
    stamps = pd.DatetimeIndex(stamps)
    return stamps[~in_session(stamps, extended=extended)]


def keep_session(frame: pd.DataFrame, *, extended: bool = False) -> pd.DataFrame:
    """Only the rows of ``frame`` (indexed by bar start) that fall inside a session."""
    return frame[in_session(pd.DatetimeIndex(frame.index), extended=extended)]


def new_york_naive(index) -> pd.DatetimeIndex:
    """Timestamps as naive New York wall-clock times: aware ones are converted, naive ones are kept.

    >>> [str(t) for t in new_york_naive(pd.DatetimeIndex(["2024-07-01T13:30:00Z"]))]
    ['2024-07-01 09:30:00']
    """
    index = pd.DatetimeIndex(index)
    if index.tz is not None:
        index = index.tz_convert(NEW_YORK).tz_localize(None)
    return index


def infer_interval(stamps: pd.DatetimeIndex, origin: str = "") -> Interval:
    """The bar size of intraday timestamps: the smallest step within each day, the same on every day.

    Gaps (a step that is a multiple of the bar size) are allowed; a day whose steps are not multiples of its
    smallest step, or two days with different smallest steps, is "mixed intervals" and raises :class:`DataError`.

    >>> infer_interval(pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-02 09:45", "2024-01-02 10:15"])).name
    '15m'
    """
    where = f" in {origin}" if origin else ""
    stamps = pd.DatetimeIndex(stamps).sort_values()
    steps_by_day: dict[dt.date, int] = {}
    values = stamps.asi8 // 60_000_000_000 if stamps.unit == "ns" else stamps.as_unit("ns").asi8 // 60_000_000_000
    days = stamps.normalize()
    for day in days.unique():
        minutes = values[days == day]
        if len(minutes) < 2:
            continue
        steps = np.diff(minutes)
        smallest = int(steps.min())
        if smallest <= 0 or np.any(steps % smallest):
            raise DataError(f"mixed intervals on {day.date()}{where}: steps of {sorted(set(steps.tolist()))[:4]} minutes")
        steps_by_day[day.date()] = smallest
    if not steps_by_day:
        raise DataError(f"cannot tell the bar size{where}: no day has two bars")
    sizes = sorted(set(steps_by_day.values()))
    if len(sizes) > 1:
        first = {size: next(d for d, s in steps_by_day.items() if s == size) for size in sizes[:2]}
        shown = ", ".join(f"{size} minutes on {day}" for size, day in first.items())
        raise DataError(f"mixed intervals{where}: {shown}")
    size = sizes[0]
    named = next((i for i in INTERVALS.values() if i.intraday and i.minutes == size), None)
    if named is None:
        raise DataError(f"{size}-minute bars{where} are not a supported interval (use 1m, 5m, 15m or 1h)")
    return named


def completed_by(stamps: pd.DatetimeIndex, interval: Interval, moment: pd.Timestamp) -> np.ndarray:
    """Which bars (by start time) are complete at ``moment``: start + bar length <= moment (never later bars).

    >>> completed_by(pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-02 09:45"]), parse_interval("15m"),
    ...              pd.Timestamp("2024-01-02 09:45")).tolist()
    [True, False]
    """
    return np.asarray(pd.DatetimeIndex(stamps) + interval.length <= moment)


def session_resample(frame: pd.DataFrame, interval: Interval) -> pd.DataFrame:
    """Aggregate OHLCV bars into ``interval`` bars anchored at each day's first bar (09:30 for regular hours).

    Used for hour bars built from half-hour ones, so they start 09:30, 10:30, ... (as Yahoo's do) instead of on
    the clock hour (which would mix the pre-market into a 09:00 bar).

    >>> idx = pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-02 10:00", "2024-01-02 10:30"])
    >>> bars = pd.DataFrame({"open": [1, 2, 3], "high": [2, 3, 4], "low": [1, 1, 2], "close": [2, 3, 4],
    ...                      "volume": [10, 20, 30]}, index=idx, dtype=float)
    >>> session_resample(bars, parse_interval("1h"))[["open", "close", "volume"]].values.tolist()
    [[1.0, 3.0, 30.0], [3.0, 4.0, 30.0]]
    """
    if frame.empty:
        return frame
    index = pd.DatetimeIndex(frame.index)
    days = index.normalize()
    anchor = pd.Series(index, index=index).groupby(days).transform("min")
    slot = anchor + ((index - anchor.to_numpy()) // interval.length) * interval.length
    rules = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    rules = {k: v for k, v in rules.items() if k in frame.columns}
    for extra in frame.columns:
        rules.setdefault(extra, "last")
    out = frame.groupby(pd.DatetimeIndex(slot.to_numpy())).agg(rules)
    out.index.name = frame.index.name
    return out
