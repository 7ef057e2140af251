"""``--data yfinance`` for the backtest CLI: the S&P 500 snapshot (or ``--symbols``) over the run's window.

The default universe is the bundled S&P 500 snapshot (or a refreshed one, see ``marketdata.universe``); its date and
the survivorship-bias warning go into the data's provenance, hence into ``summary.json``. With the default
universe, symbols Yahoo cannot serve are dropped and named on stderr (and in the provenance); symbols the user
named with ``--symbols`` must all load.

Example (offline against an empty cache, so it fails with a one-line reason):
    >>> import tempfile
    >>> try:
    ...     load_yfinance_for_backtest("AAPL", start="2024-01-02", end="2024-03-01", cache_dir=tempfile.mkdtemp(),
    ...                                offline=True)
    ... except DataError as exc:
    ...     print(str(exc).split(';')[0])
    yfinance 2023-12-19..2024-03-01: AAPL (not cached, and offline mode is on)
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path

from marketdata.errors import DataError
from marketdata.prices import PriceData
from marketdata.universe import load_sp500
from marketdata.yahoo import YahooProvider


def fetch_window(start: str | dt.date, end: str | dt.date, warmup_bars: int = 0) -> tuple[dt.date, dt.date]:
    """Calendar dates to fetch so that ``warmup_bars`` trading days precede ``start``.

    Example:
        >>> fetch_window("2022-01-03", "2022-12-30", warmup_bars=252)
        (datetime.date(2020, 12, 20), datetime.date(2022, 12, 30))
    """
    start, end = _date(start, "start"), _date(end, "end")
    if start > end:
        raise DataError(f"empty date range: start {start} is after end {end}")
    # 252 trading days a year, plus two weeks for holidays and a late listing's first days.
    return start - dt.timedelta(days=math.ceil(warmup_bars * 365 / 252) + 14), end


def load_yfinance_for_backtest(symbols: str | None, *, start: str | dt.date | None = None,
                               end: str | dt.date | None = None, warmup_bars: int = 0,
                               cache_dir: str | Path | None = None, offline: bool | None = None,
                               progress: bool | None = None) -> PriceData:
    """Prices for a backtest: ``symbols`` (comma-separated) or the S&P 500 snapshot, over start - warm-up .. end.

    Without ``start``/``end`` it fetches the last five years up to today.
    """
    end_date = _date(end, "end") if end is not None else dt.date.today()
    start_date = _date(start, "start") if start is not None else end_date - dt.timedelta(days=5 * 365)
    lo, hi = fetch_window(start_date, end_date, warmup_bars)
    provider = YahooProvider(cache_dir=cache_dir, offline=offline)
    extra: dict = {"backtest_window": [start_date.isoformat(), end_date.isoformat()], "warmup_bars": warmup_bars}
    if symbols:
        wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        if not wanted:
            raise DataError("--symbols lists no symbols")
        strict = True
        extra["universe"] = "--symbols"
    else:
        universe = load_sp500(cache_dir=cache_dir)
        wanted = universe.symbols
        strict = False
        extra.update(universe.provenance())
        print(f"universe: S&P 500 snapshot of {universe.snapshot_date} ({len(wanted)} symbols); "
              f"{universe.survivorship_note}", file=sys.stderr)
    from clitools import progress as progress_bar

    with progress_bar(len(wanted), "yfinance", enabled=progress) as bar:
        bar.unit = "symbol"
        data = provider.load(wanted, lo, hi, strict=strict, progress=bar.update, extra=extra)
    missing = data.provenance.get("symbols_missing") or {}
    if missing:
        names = sorted(s for group in missing.values() for s in group)
        print(f"warning: {len(names)} symbol(s) left out, Yahoo had no prices for them: {', '.join(names[:20])}"
              f"{' ...' if len(names) > 20 else ''} (see summary.json data.symbols_missing)", file=sys.stderr)
    incomplete = data.provenance.get("symbols_incomplete") or {}
    if incomplete:
        print(f"warning: {len(incomplete)} symbol(s) served from the cache without part of the window "
              f"(Yahoo unreachable, or offline mode): {', '.join(sorted(incomplete)[:20])}", file=sys.stderr)
    return data


def _date(value, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise DataError(f"--{what} {value!r} is not a date (YYYY-MM-DD)") from None
