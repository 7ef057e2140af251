"""Small pieces both fetching providers (yfinance, Alpaca's market data) share: symbol lists, dates, empty bars.

Example:
    >>> unique_symbols([" aapl", "MSFT", "AAPL", ""])
    ['AAPL', 'MSFT']
    >>> as_date("2022-06-01")
    datetime.date(2022, 6, 1)
    >>> list(empty_bars("15m").columns), empty_bars("15m").index.name
    (['open', 'high', 'low', 'close', 'volume'], 'timestamp')
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Iterable

import pandas as pd

from marketdata.bars import Interval, completed_by
from marketdata.errors import DataError
from marketdata.prices import PriceData

_NEW_YORK = "America/New_York"


def unique_symbols(symbols: Iterable[str]) -> list[str]:
    """Upper-cased, stripped, de-duplicated in order; :class:`DataError` when none is left."""
    seen: dict[str, None] = {}
    for symbol in symbols:
        symbol = str(symbol).strip().upper()
        if symbol:
            seen.setdefault(symbol, None)
    if not seen:
        raise DataError("no symbols given")
    return list(seen)


def as_date(value) -> dt.date:
    """A date from a date, a datetime or text; :class:`DataError` otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise DataError(f"not a date: {value!r}") from None


def empty_bars(interval: str = "1d") -> pd.DataFrame:
    """No bars, in the shape a provider's cache stores them (``date`` index for daily, ``timestamp`` intraday)."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close", "volume")})
    frame.index = pd.DatetimeIndex([], name="date" if interval == "1d" else "timestamp")
    return frame


def new_york_wall_clock(moment: dt.datetime) -> pd.Timestamp:
    """``moment`` as New York wall-clock time without a zone, as intraday bars are stamped (naive: already so).

    >>> new_york_wall_clock(dt.datetime(2022, 6, 1, 15, 45, tzinfo=dt.timezone.utc))
    Timestamp('2022-06-01 11:45:00')
    """
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert(_NEW_YORK).tz_localize(None) if stamp.tzinfo else stamp


def start_for_bars(end: dt.date, bars: int, interval: Interval, extended: bool = False) -> dt.date:
    """The first calendar day to fetch so that ``bars`` bars of ``interval`` end at ``end``, with room for holidays.

    >>> from marketdata.bars import parse_interval
    >>> start_for_bars(dt.date(2022, 6, 1), 26, parse_interval("15m"))
    datetime.date(2022, 5, 20)
    """
    per_day = 1 if not interval.intraday else max(1, (960 if extended else 390) // interval.minutes)
    return end - dt.timedelta(days=math.ceil(bars / per_day * 365 / 252) + 10)


def last_bars(data: PriceData, interval: Interval, end: dt.date | dt.datetime, bars: int | None,
              source: str) -> PriceData:
    """``data`` cut to what is known at ``end`` (a datetime: intraday bars complete by then), then its last ``bars``."""
    if interval.intraday and isinstance(end, dt.datetime):
        moment = new_york_wall_clock(end)
        done = completed_by(data.closes.index, interval, moment)
        if not done.any():
            raise DataError(f"no {interval.name} bars complete by {moment} from {source}")
        data = data.between(None, data.closes.index[done][-1])
    if bars is not None and len(data) > bars:
        data = data.between(data.closes.index[-bars], None)
    return data
