"""Prices from a CSV file, in either of two shapes detected from the header.

* long: ``date,symbol,close`` plus optional ``open,high,low,volume`` (one row per symbol and day);
* wide: ``date`` then one close column per symbol (like the bundled sample).

Column names are case-insensitive; ``Date``/``date`` and ``Symbol``/``ticker`` are accepted.

**Intraday** files are told apart by their timestamps: a date column (``timestamp``, ``datetime``, ...) whose
values carry a time of day. Each timestamp is the bar's start in New York wall-clock time (values with a UTC
offset, ``2024-07-01T13:30:00Z`` or ``...-04:00``, are converted to it). The bar size is inferred
(``marketdata.bars.infer_interval``: 1m, 5m, 15m or 1h); a file that mixes bar sizes, or has a bar outside the
New York regular session (XNYS: holidays and early closes included; ``extended=True`` allows 04:00-20:00), is
refused with one line naming the first offending row. Files whose dates have no time of day load as daily bars,
as before.

**Dates are strict.** Every value of the date column is ISO 8601 (``2022-01-03``, ``2024-07-01 09:30``,
``2024-07-01T13:30:00Z``), or follows the ``date_format`` given (``--date-format %d/%m/%Y``, Python's
``strftime`` codes). Anything else (``03/01/2022``, ``03.01.2022``, the integer ``20220103``) is refused in one
line naming the line of the file, never guessed: a guessed day-first date silently reorders the history. A daily
row on a day with no NYSE session (a Saturday, a market holiday) is refused too, naming its line, since it would
become a trading bar; drop it from the file (``docs/marketdata.md``).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
    >>> _ = path.write_text("date,symbol,close\\n2022-01-03,AAA,10\\n2022-01-04,AAA,11\\n")
    >>> load_csv(path).closes["AAA"].tolist()
    [10.0, 11.0]
    >>> _ = path.write_text("timestamp,AAA\\n2024-07-01 09:30,10\\n2024-07-01 09:45,11\\n2024-07-01 10:00,12\\n")
    >>> data = load_csv(path)
    >>> data.interval, [str(t) for t in data.closes.index[:2]]
    ('15m', ['2024-07-01 09:30:00', '2024-07-01 09:45:00'])
    >>> _ = path.write_text("date,AAA\\n03/01/2022,10\\n04/01/2022,11\\n")
    >>> load_csv(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    marketdata.errors.DataError: line 2 of ...p.csv: date '03/01/2022' is not ISO 8601 (YYYY-MM-DD[ HH:MM]); ...
    >>> load_csv(path, date_format="%d/%m/%Y").closes.index[0].date().isoformat()
    '2022-01-03'
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from marketdata.errors import DataError
from marketdata.prices import PriceData

_DATE_NAMES = ("date", "datetime", "timestamp", "ds")
_SYMBOL_NAMES = ("symbol", "ticker")
_OHLCV = ("open", "high", "low", "close", "adj close", "adj_close", "volume")
# ISO 8601 as a price file writes it: a date, optionally a time of day, optionally a UTC offset.
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")


def load_csv(path: str | Path, *, adjusted: bool | None = None, extended: bool = False,
             date_format: str | None = None) -> PriceData:
    """Read a long or wide CSV of daily or intraday prices; raises :class:`DataError` with a one-line reason.

    ``date_format`` (``strftime`` codes, e.g. ``%d/%m/%Y``) reads dates that are not ISO 8601."""
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
    dates = _parse_stamps(frame[date_col], path, date_format)
    frame = frame.assign(**{str(date_col): dates})
    symbol_col = next((lower[n] for n in _SYMBOL_NAMES if n in lower), None)
    origin = str(path)
    stamps = pd.DatetimeIndex(dates)
    interval = "1d"
    extra: dict = {}
    if (stamps != stamps.normalize()).any():  # a time of day: intraday bars
        spec = _intraday_interval(frame, date_col, symbol_col, path, extended)
        interval = spec.name
        extra = {"session": "extended (04:00-20:00 New York)" if extended else "regular (XNYS sessions)",
                 "timestamps": "bar start, New York wall-clock time"}
    else:
        _refuse_sessionless_days(stamps, path)
    if date_format:
        extra["date_format"] = date_format
    highs = lows = None
    if symbol_col is not None:
        closes, opens, highs, lows = _long(frame, lower, date_col, symbol_col, path, intraday=interval != "1d")
        shape = "long"
    else:
        closes, opens = _wide(frame, lower, date_col, path), None
        shape = "wide"
    return PriceData.from_closes(
        closes, opens=opens, highs=highs, lows=lows, source=f"csv:{path.resolve()}", adjusted=adjusted, origin=origin,
        extra={"csv_shape": shape, **extra}, interval=interval,
    )


def _parse_stamps(column: pd.Series, path: Path, date_format: str | None = None) -> pd.Series:
    """Dates or timestamps, ISO 8601 or ``date_format``; values with a UTC offset become New York wall-clock
    times (naive). The first value that does not parse is refused, naming its line (the header is line 1)."""
    text = column.astype(str).str.strip()
    if date_format:
        has_offset = pd.Series("%z" in date_format, index=text.index)
        parsed = pd.to_datetime(text, errors="coerce", format=date_format, utc=bool(has_offset.any()))
    else:
        wanted = "ISO 8601 (YYYY-MM-DD[ HH:MM]); give its layout with --date-format (e.g. %d/%m/%Y) or convert the file"
        iso = text.str.match(_ISO)
        if not iso.all():
            row = int(np.flatnonzero(~iso.to_numpy())[0])
            raise DataError(f"line {row + 2} of {path}: date {text.iloc[row]!r} is not {wanted}")
        has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True) & text.str.contains(r"\d[T ]\d", regex=True)
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=bool(has_offset.any()))
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(f"line {row + 2} of {path}: date {text.iloc[row]!r} is not a valid date"
                        + (f" in the --date-format {date_format!r}" if date_format else ""))
    if has_offset.any():
        return parsed.dt.tz_convert("America/New_York").dt.tz_localize(None)
    return parsed


def _refuse_sessionless_days(dates: pd.DatetimeIndex, path: Path) -> None:
    """A daily row on a weekend or market holiday would be taken for a trading bar: refuse it, naming its line."""
    from marketdata.bars import session_hours
    from marketdata.sessions import session_table

    days = pd.DatetimeIndex(dates).normalize()
    table = session_table()
    known = (days >= pd.Timestamp(table.first)) & (days <= pd.Timestamp(table.last))
    sessions = session_hours(days.min().date(), days.max().date()).index
    # Beyond the calendar's years only weekends are known to have no session.
    ok = np.where(known, days.isin(sessions), days.dayofweek < 5)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        day = days[row]
        why = f"a {day.day_name()}" if day.dayofweek >= 5 else f"a {day.day_name()} the NYSE was closed"
        raise DataError(f"line {row + 2} of {path}: {day.date()} is {why}, with no trading session; daily rows "
                        f"must be NYSE sessions: remove it")


def _intraday_interval(frame: pd.DataFrame, date_col, symbol_col, path: Path, extended: bool):
    """The bar size of an intraday file, after checking every bar lies in a session and the steps agree."""
    from marketdata.bars import in_session, infer_interval

    stamps = pd.DatetimeIndex(frame[date_col])
    inside = in_session(stamps, extended=extended)
    if not inside.all():
        row = int(np.flatnonzero(~inside)[0])
        when = "04:00-20:00 on a session day" if extended else "the New York regular session (XNYS)"
        raise DataError(f"timestamp {stamps[row]} on line {row + 2} of {path} is outside {when}; "
                        f"keep only regular-hours bars (or load with extended hours)")
    # Each symbol's bars in time order (stable: equal stamps keep file order), in arrays: files hold millions of rows.
    codes = (np.zeros(len(frame), dtype=np.int64) if symbol_col is None
             else pd.factorize(frame[symbol_col], use_na_sentinel=False)[0].astype(np.int64))
    minutes_all = stamps.to_numpy().astype("datetime64[m]").astype(np.int64)
    days_all = stamps.normalize().to_numpy().astype("datetime64[D]").astype(np.int64)
    order = np.lexsort((minutes_all, codes))
    code, minute, day = codes[order], minutes_all[order], days_all[order]
    same_day = (code[1:] == code[:-1]) & (day[1:] == day[:-1])  # a step from the bar before, that symbol that day
    step_rows = order[1:][same_day]  # (row, minutes since that symbol's previous bar that day, its symbol and day)
    steps = np.diff(minute)[same_day]
    if not len(steps):
        raise DataError(f"cannot tell the bar size in {path}: no day has two bars")
    values, counts = np.unique(steps[steps > 0], return_counts=True)
    size = int(values[np.argmax(counts)]) if len(values) else 0
    # The first row (in file order) whose step from the bar before it is not a whole number of bars, or whose
    # symbol's day runs on a finer or coarser grid than the file's bar size.
    finest = pd.Series(steps).groupby([code[1:][same_day], day[1:][same_day]]).transform("min").to_numpy()
    wrong = (steps % size != 0 if size else np.ones(len(steps), dtype=bool)) | ((finest != size) & (steps == finest))
    bad = sorted(zip(step_rows[wrong].tolist(), steps[wrong].tolist()))[:1]
    if bad:
        row, step = bad[0]
        raise DataError(f"mixed intervals in {path}: line {row + 2} ({stamps[row]}) comes {step} minutes after the "
                        f"bar before it, while the file's bars are {size} minutes apart")
    return infer_interval(pd.DatetimeIndex(stamps.unique()), origin=str(path))


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


def _long(frame, lower, date_col, symbol_col, path, intraday: bool = False):
    close_col = lower.get("close") or lower.get("adj close") or lower.get("adj_close")
    if close_col is None:
        raise DataError(f"{path} has a symbol column but no close column")
    frame = frame.assign(**{str(symbol_col): frame[symbol_col].astype(str).str.strip().str.upper()})
    dup = frame.duplicated([date_col, symbol_col])
    if dup.any():
        row = frame[dup].iloc[0]
        shown = row[date_col] if intraday else row[date_col].date()
        raise DataError(f"duplicate {'timestamp' if intraday else 'date'} {shown} for {row[symbol_col]} in {path}")
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
