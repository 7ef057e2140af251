"""Prices from a CSV file, in either of two shapes detected from the header.

* long: ``date,symbol,close`` plus optional ``open,high,low,volume`` (one row per symbol and day);
* wide: ``date`` then one close column per symbol (like the bundled sample).

Column names are case-insensitive; ``Date``/``date`` and ``Symbol``/``ticker`` are accepted.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
    >>> _ = path.write_text("date,symbol,close\\n2022-01-03,AAA,10\\n2022-01-04,AAA,11\\n")
    >>> load_csv(path).closes["AAA"].tolist()
    [10.0, 11.0]
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from marketdata.errors import DataError
from marketdata.prices import PriceData

_DATE_NAMES = ("date", "datetime", "timestamp", "ds")
_SYMBOL_NAMES = ("symbol", "ticker")
_OHLCV = ("open", "high", "low", "close", "adj close", "adj_close", "volume")


def load_csv(path: str | Path, *, adjusted: bool | None = None) -> PriceData:
    """Read a long or wide CSV of daily prices; raises :class:`DataError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path}: {reason}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    _refuse_duplicated_columns(path)
    lower = {str(c).strip().lower(): c for c in frame.columns}
    date_col = next((lower[n] for n in _DATE_NAMES if n in lower), None)
    if date_col is None:
        raise DataError(f"{path} has no date column (expected one of: {', '.join(_DATE_NAMES)})")
    dates = pd.to_datetime(frame[date_col], errors="coerce", utc=False, format="mixed")
    if dates.isna().any():
        bad = frame[date_col][dates.isna()].iloc[0]
        raise DataError(f"unparseable date {bad!r} in {path}")
    frame = frame.assign(**{str(date_col): dates})
    symbol_col = next((lower[n] for n in _SYMBOL_NAMES if n in lower), None)
    origin = str(path)
    highs = lows = None
    if symbol_col is not None:
        closes, opens, highs, lows = _long(frame, lower, date_col, symbol_col, path)
        shape = "long"
    else:
        closes, opens = _wide(frame, lower, date_col, path), None
        shape = "wide"
    return PriceData.from_closes(
        closes, opens=opens, highs=highs, lows=lows, source=f"csv:{path.resolve()}", adjusted=adjusted, origin=origin, extra={"csv_shape": shape}
    )


def _refuse_duplicated_columns(path: Path) -> None:
    """pandas renames a repeated header (``AAPL``, ``AAPL.1``): a second symbol out of a typo. Read it as written."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    seen: set[str] = set()
    for name in header:
        key = name.strip().lower()
        if key in seen:
            raise DataError(f"duplicated column {name.strip()!r} in {path} (column names are case-insensitive)")
        seen.add(key)


def _long(frame, lower, date_col, symbol_col, path):
    close_col = lower.get("close") or lower.get("adj close") or lower.get("adj_close")
    if close_col is None:
        raise DataError(f"{path} has a symbol column but no close column")
    frame = frame.assign(**{str(symbol_col): frame[symbol_col].astype(str).str.strip().str.upper()})
    dup = frame.duplicated([date_col, symbol_col])
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataError(f"duplicate date {row[date_col].date()} for {row[symbol_col]} in {path}")
    closes = frame.pivot(index=date_col, columns=symbol_col, values=close_col)
    extra = {}
    for name in ("open", "high", "low"):
        if name in lower and frame[lower[name]].notna().any():
            extra[name] = frame.pivot(index=date_col, columns=symbol_col, values=lower[name])
            extra[name].columns.name = None
    closes.columns.name = None
    return closes, extra.get("open"), extra.get("high"), extra.get("low")


def _wide(frame, lower, date_col, path):
    value_cols = [c for c in frame.columns if c != date_col]
    if not value_cols:
        raise DataError(f"{path} has a date column but no close column")
    ohlcv = [c for c in value_cols if str(c).strip().lower() in _OHLCV]
    if ohlcv:
        # A single-symbol OHLC file without a symbol column: the file name names the symbol.
        close_col = lower.get("close") or lower.get("adj close") or lower.get("adj_close")
        if close_col is None:
            raise DataError(f"{path} has {', '.join(map(str, ohlcv))} but no close column")
        return frame.set_index(date_col)[[close_col]].rename(columns={close_col: path.stem.upper()})
    return frame.set_index(date_col)[value_cols]
