"""The NYSE (XNYS) session table: every session's date, open and close, as sorted numpy arrays.

Building ``exchange_calendars.get_calendar("XNYS")`` costs about 0.3 s in a fresh process (pandas expands every
holiday rule over every year), which a cold Lambda cycle pays before it trades. The same table is bundled in
``marketdata/data/xnys_sessions.npz``, written from ``exchange_calendars`` itself, and read in a few
milliseconds. The file records the ``exchange_calendars`` version that made it and its range; it is used only
when that version is the installed one and the file reaches ``exchange_calendars``' own default end (a year from
today), and it is then cut to that end, so the coverage is exactly what ``exchange_calendars`` gives. Otherwise
(another version, a stale or missing file, another exchange) the table is built from ``exchange_calendars``, with
the same start (1990-01-02) and default end.

Rewrite the file after upgrading ``exchange_calendars``: ``python -m marketdata.sessions --write``.

Example:
    >>> import datetime as dt
    >>> table = session_table()
    >>> table.first
    datetime.date(1990, 1, 2)
    >>> table.locate(dt.date(2022, 7, 4)) is None          # Independence Day
    True
    >>> i = table.locate(dt.date(2022, 11, 25))            # the day after Thanksgiving closes at 13:00
    >>> [str(t) for t in pd.to_datetime(np.array([table.opens[i], table.closes[i]]), utc=True).tz_convert(NEW_YORK)]
    ['2022-11-25 09:30:00-05:00', '2022-11-25 13:00:00-05:00']
"""

from __future__ import annotations

import datetime as dt
import sys
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

NEW_YORK = "America/New_York"
FIRST_DAY = "1990-01-02"  # the bundled sample starts in 1990, so replays need sessions that far back
BUNDLED_END = "2030-12-31"  # the end the bundled file is written with (a few years past the default end)
BUNDLED_FILE = Path(__file__).resolve().parent / "data" / "xnys_sessions.npz"
_BUNDLED_NAME = "XNYS"


@dataclass(frozen=True)
class SessionTable:
    """One exchange's sessions: ``days`` (``datetime64[D]``, sorted), ``opens`` and ``closes`` (UTC ns, int64).

    ``source`` says where it came from (the bundled file or ``exchange_calendars``), for messages and tests.
    """

    name: str
    days: np.ndarray
    opens: np.ndarray
    closes: np.ndarray
    source: str

    @property
    def first(self) -> dt.date:
        """The first session of the table."""
        return self.days[0].astype(dt.date)

    @property
    def last(self) -> dt.date:
        """The last session of the table."""
        return self.days[-1].astype(dt.date)

    def covers(self, day: dt.date) -> bool:
        """Is ``day`` between the first and the last session (inclusive)?"""
        return self.first <= day <= self.last

    def locate(self, day: dt.date) -> int | None:
        """The row of the session on ``day``, or ``None`` when ``day`` has no session.

        >>> session_table().locate(dt.date(2022, 7, 2)) is None   # a Saturday
        True
        """
        key = np.datetime64(day, "D")
        i = int(np.searchsorted(self.days, key))
        return i if i < len(self.days) and self.days[i] == key else None

    def span(self, first: dt.date, last: dt.date) -> slice:
        """The rows of the sessions from ``first`` to ``last`` inclusive (empty when there are none).

        >>> table = session_table()
        >>> [str(d) for d in table.days[table.span(dt.date(2022, 7, 1), dt.date(2022, 7, 5))]]
        ['2022-07-01', '2022-07-05']
        """
        lo = int(np.searchsorted(self.days, np.datetime64(first, "D"), side="left"))
        hi = int(np.searchsorted(self.days, np.datetime64(last, "D"), side="right"))
        return slice(lo, max(lo, hi))

    def before(self, day: dt.date) -> int | None:
        """The row of the last session strictly before ``day``, or ``None`` when the table starts later."""
        i = int(np.searchsorted(self.days, np.datetime64(day, "D"), side="left")) - 1
        return i if i >= 0 else None

    def after(self, day: dt.date) -> int | None:
        """The row of the first session strictly after ``day``, or ``None`` when the table ends sooner."""
        i = int(np.searchsorted(self.days, np.datetime64(day, "D"), side="right"))
        return i if i < len(self.days) else None


def default_end() -> pd.Timestamp:
    """``exchange_calendars``' default end (its ``GLOBAL_DEFAULT_END``): today plus one year, midnight.

    >>> session_table().last <= default_end().date() < session_table().last + dt.timedelta(days=5)
    True
    """
    return pd.Timestamp.now().floor("D") + pd.DateOffset(years=1)


def installed_version() -> str | None:
    """The installed ``exchange_calendars`` version, or ``None`` when it is not installed.

    >>> installed_version().count(".") >= 1
    True
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exchange_calendars")
    except PackageNotFoundError:
        return None


def from_exchange_calendars(name: str = _BUNDLED_NAME, end: str | pd.Timestamp | None = None) -> SessionTable:
    """The table built by ``exchange_calendars`` from 1990-01-02 to ``end`` (default: its own default end).

    >>> table = from_exchange_calendars(end="1990-01-05")
    >>> [str(d) for d in table.days], table.source.startswith("exchange_calendars ")
    (['1990-01-02', '1990-01-03', '1990-01-04', '1990-01-05'], True)
    """
    import exchange_calendars  # about 0.3 s with the calendar's construction: the slow path

    calendar = exchange_calendars.get_calendar(name, start=FIRST_DAY, end=end)
    schedule = calendar.schedule
    return SessionTable(
        name=name,
        days=pd.DatetimeIndex(schedule.index).to_numpy().astype("datetime64[D]"),
        opens=_utc_ns(schedule["open"]),
        closes=_utc_ns(schedule["close"]),
        source=f"exchange_calendars {installed_version()}",
    )


def _utc_ns(column: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(column).tz_convert("UTC").as_unit("ns").asi8.copy()


def read_bundled(path: Path | None = None, *, version: str | None = None,
                 end: pd.Timestamp | None = None) -> SessionTable | None:
    """The bundled table (``path``, default :data:`BUNDLED_FILE`) cut to ``end`` (default: the default end), or
    ``None`` when it may not be used.

    It may not be used when it was written by another ``exchange_calendars`` than ``version`` (default: the
    installed one), when it ends before ``end``, or when it cannot be read.

    >>> read_bundled(version="0.0.1") is None          # written by another exchange_calendars: not used
    True
    """
    path = BUNDLED_FILE if path is None else Path(path)
    end = default_end() if end is None else pd.Timestamp(end)
    try:
        with np.load(path, allow_pickle=False) as saved:
            recorded = str(saved["exchange_calendars_version"])
            name, first, last = str(saved["name"]), str(saved["start"]), str(saved["end"])
            if name != _BUNDLED_NAME or first != FIRST_DAY or pd.Timestamp(last) < end:
                return None
            if recorded != (installed_version() if version is None else version):
                return None
            days, opens, closes = saved["days"], saved["opens"], saved["closes"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):
        return None  # missing or damaged: exchange_calendars still answers
    if not _well_formed(days, opens, closes):
        return None
    keep = int(np.searchsorted(days, np.datetime64(end.date(), "D"), side="right"))
    return SessionTable(name=name, days=days[:keep], opens=opens[:keep], closes=closes[:keep],
                        source=f"{path.name} (exchange_calendars {recorded})")


def _well_formed(days: np.ndarray, opens: np.ndarray, closes: np.ndarray) -> bool:
    # A file that decodes but is not a table (edited by hand, half-written) must not answer for the exchange.
    return (days.dtype == np.dtype("datetime64[D]") and opens.dtype == closes.dtype == np.dtype(np.int64)
            and days.ndim == opens.ndim == closes.ndim == 1 and len(days) == len(opens) == len(closes) > 0
            and bool(np.all(days[1:] > days[:-1])) and bool(np.all(opens < closes)))


@lru_cache(maxsize=4)
def session_table(name: str = _BUNDLED_NAME) -> SessionTable:
    """The process's one table of ``name``'s sessions: the bundled file when it may be used, else built.

    >>> session_table().name
    'XNYS'
    """
    if name == _BUNDLED_NAME:
        bundled = read_bundled()
        if bundled is not None:
            return bundled
    return from_exchange_calendars(name)


def write(path: Path | None = None, end: str = BUNDLED_END) -> SessionTable:
    """Write the XNYS table from ``exchange_calendars`` to ``end`` into ``path`` (default :data:`BUNDLED_FILE`).

    The file is written beside its place and then moved there, so a failed write leaves the old one whole.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write(Path(folder) / "xnys.npz")
    ...     str(read_bundled(Path(folder) / "xnys.npz").days[-1]) == str(session_table().last)
    True
    """
    path = BUNDLED_FILE if path is None else Path(path)
    table = from_exchange_calendars(_BUNDLED_NAME, end=end)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as out:  # a file object: savez would append ".npz" to a name without it
            np.savez_compressed(out, days=table.days, opens=table.opens, closes=table.closes,
                                name=np.array(_BUNDLED_NAME), start=np.array(FIRST_DAY), end=np.array(str(end)),
                                exchange_calendars_version=np.array(installed_version() or ""))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return table


def main(argv: list[str] | None = None) -> int:
    from clitools import OneLineErrorParser  # only the command line needs it

    parser = OneLineErrorParser(
        prog="python -m marketdata.sessions",
        description=(f"The bundled NYSE session table ({BUNDLED_FILE.name}): without options, show what it holds "
                     f"and whether this process may use it. It is used only when the installed "
                     f"exchange_calendars is the version that wrote it; rewrite it after an upgrade."))
    parser.add_argument("--write", action="store_true",
                        help=f"rebuild the file from the installed exchange_calendars, {FIRST_DAY} to {BUNDLED_END}")
    args = parser.parse_args(argv)
    if args.write:
        try:
            table = write()
        except ImportError:
            print("error: exchange_calendars is not installed: install it to write the session table",
                  file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"error: cannot write {BUNDLED_FILE}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {BUNDLED_FILE}: {len(table.days)} sessions {table.first} to {table.last} "
              f"from exchange_calendars {installed_version()}")
        return 0
    table = session_table()
    print(f"{len(table.days)} XNYS sessions {table.first} to {table.last}, from {table.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
