"""The interface that serves prices to both homes, and its offline implementations.

The backtest asks for a window of history; the live cycle asks for the history of universe plus holdings up to
now. Both open their provider with :func:`open_provider` from the same spec (``sample``, ``yfinance``,
``csv:PATH`` or a CSV path) and go through :class:`PriceProvider`. ``marketdata.yahoo`` adds the yfinance provider
with its cache.

Example:
    >>> import datetime as dt
    >>> data = SampleProvider().history(["AAPL", "KO"], end=dt.date(2022, 6, 1), bars=3)
    >>> data.closes.index[-1].date().isoformat(), data.symbols
    ('2022-06-01', ['AAPL', 'KO'])
    >>> partial = SampleProvider().history(["AAPL", "NOPE", "A/B"], end=dt.date(2022, 6, 1), bars=3, strict=False)
    >>> partial.symbols, partial.provenance["symbols_missing"]
    (['AAPL'], {'invalid': ['A/B'], 'unknown': ['NOPE']})
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol, Sequence

import pandas as pd

from marketdata.csvfile import load_csv
from marketdata.errors import DataError
from marketdata.prices import PriceData
from marketdata.sample import load_sample
from marketdata.symbols import INVALID, UNKNOWN, describe_missing, is_valid_symbol, with_missing


class PriceProvider(Protocol):
    name: str

    def history(self, symbols: Sequence[str], end: dt.date, bars: int | None = None,
                start: dt.date | None = None, strict: bool = True, interval: str = "1d") -> PriceData:
        """Bars of ``interval`` (default daily; see ``marketdata.bars``) for ``symbols`` up to and including
        ``end`` (never later): the last ``bars`` rows, or from ``start``. Unknown symbols raise
        :class:`DataError` naming them; with ``strict=False`` they, and junk ones (empty, characters no ticker
        has), are dropped and listed in ``provenance["symbols_missing"]`` by reason, the same reasons for every
        provider (see ``marketdata.symbols``); an error only if none is left. For intraday bars a date ``end``
        includes that whole day, a datetime only the bars complete by then. A source that does not serve
        ``interval`` raises :class:`DataError` naming it."""
        ...


class FrameProvider:
    """Serves a :class:`PriceData` held in memory (the sample, a CSV file, or a test's frame)."""

    def __init__(self, data: PriceData, name: str = "frame") -> None:
        self.data = data
        self.name = name

    def history(self, symbols: Sequence[str], end: dt.date, bars: int | None = None,
                start: dt.date | None = None, strict: bool = True, interval: str = "1d") -> PriceData:
        from marketdata.bars import completed_by, parse_interval
        from marketdata.fetching import new_york_wall_clock

        spec = parse_interval(interval)
        if spec.name != self.data.interval:
            raise DataError(f"{self.name} has {self.data.interval} bars, not {spec.name}")
        wanted = list(dict.fromkeys(str(s).strip().upper() for s in symbols))
        if strict:
            selected = self.data.select(wanted)
        else:
            # Junk and unknown symbols are left out and named, as every provider does (marketdata.symbols).
            known = [s for s in wanted if s in self.data.closes.columns]
            left_out = [s for s in wanted if s not in self.data.closes.columns]
            missing = {INVALID: [s for s in left_out if not is_valid_symbol(s)],
                       UNKNOWN: [s for s in left_out if is_valid_symbol(s)]}
            missing = {reason: names for reason, names in missing.items() if names}
            if not known:
                raise DataError(f"no prices from {self.name}: {describe_missing(missing) or 'no symbols given'}")
            selected = with_missing(self.data.select(known), missing)
        if spec.intraday and isinstance(end, dt.datetime):
            done = completed_by(selected.closes.index, spec, new_york_wall_clock(end))
            last = selected.closes.index[done][-1] if done.any() else pd.Timestamp.min
        elif spec.intraday:
            last = pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)  # the whole day
        else:
            last = pd.Timestamp(end)
        window = selected.between(pd.Timestamp(start) if start else None, last)
        if len(window) == 0:
            raise DataError(f"no prices up to {end} from {self.name}")
        if bars is not None:
            window = window.between(window.closes.index[max(0, len(window) - bars)], None)
        return window


class SampleProvider(FrameProvider):
    """The bundled sample (20 stocks, 1990 to 2022-12-28): the offline default."""

    def __init__(self) -> None:
        super().__init__(load_sample(), name="sample")


class CsvProvider(FrameProvider):
    def __init__(self, path: str, date_format: str | None = None) -> None:
        super().__init__(load_csv(path, date_format=date_format), name=f"csv:{path}")


def open_provider(spec: str, *, cache_dir: str | Path | None = None, offline: bool | None = None,
                  date_format: str | None = None) -> PriceProvider:
    """The one way into prices for both homes: ``sample``, ``yfinance``, ``alpaca``, ``csv:PATH`` or a CSV path.

    ``alpaca`` reads its keys from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` (and ``APCA_API_DATA_URL``,
    ``APCA_DATA_FEED``; see ``marketdata.alpaca_data``).

    Optional sources are imported lazily, so the sample needs no yfinance. ``date_format`` reads a CSV file's
    dates that are not ISO 8601 (``marketdata.csvfile``); other sources refuse it.

    >>> open_provider("sample").name
    'sample'
    >>> open_provider("nope.csv")
    Traceback (most recent call last):
    ...
    marketdata.errors.DataError: no such file: nope.csv
    """
    text = (spec or "").strip()
    if date_format and text in ("sample", "yfinance", "alpaca"):
        raise DataError(f"a date format reads a CSV file's dates; {text} has dates of its own")
    if text == "sample":
        return SampleProvider()
    if text == "yfinance":
        from marketdata.yahoo import YahooProvider  # lazy: the sample path needs no yfinance

        return YahooProvider(cache_dir=cache_dir, offline=offline)
    if text == "alpaca":
        from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider  # lazy, like yfinance

        return AlpacaDataProvider(AlpacaDataConfig.from_env(), cache_dir=cache_dir, offline=offline)
    if not text:
        raise DataError("no price source given: use sample, yfinance, alpaca, csv:PATH or a path to a CSV file")
    return CsvProvider(text[len("csv:"):] if text.startswith("csv:") else text, date_format=date_format)
