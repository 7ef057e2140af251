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
from typing import Iterable

import pandas as pd

from marketdata.errors import DataError


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
