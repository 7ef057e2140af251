"""A durable on-disk cache of bars: one file per symbol and kind, written atomically.

The kind (a folder) names the source, the bar size and the adjustment: ``yahoo-daily-adjusted``,
``yahoo-15m-adjusted``, ``alpaca-iex-1m-all``, ... so daily and intraday bars, or two feeds, never mix in one
file. Intraday files keep their bar start times (naive New York time, see ``marketdata.bars``).

Each file holds the bars (``open, high, low, close, volume`` and, unadjusted, ``adj_close``) and, in its
metadata, the calendar range Yahoo was asked for (``covered``) and when it answered (``fetched_at``). Knowing the
covered range, not just the dates of the bars, lets the provider fetch only what is missing: a weekend or a range
before a listing is asked for once, not on every run.

Files are written to a temporary name in the same folder and renamed over the old one (``os.replace``), so a
crash mid-write leaves the previous file intact; readers ignore the temporary files. A file that cannot be read
raises :class:`CacheCorruptError` and is left where it is: the cache never deletes data because something failed.

The folder is ``$PROPHETTREND_CACHE`` if set, else the user cache folder (``~/.cache/prophettrend`` on Linux).

Three file formats, the same content, one per cache (``file_format``), each read back exactly:

- ``npy`` (the default): ``SYMBOL.npy``, two ``#prophettrend {json}`` lines (the metadata, then the index name)
  followed by numpy's own ``.npy`` payload of one structured array (the index and every column, with their dtypes),
  loaded with ``allow_pickle=False``. It needs numpy only, so the Lambda layer (which leaves pyarrow's 79 MB out)
  uses it too, and it reads in about 0.2 ms where Parquet takes 0.6 ms and CSV 1.2 ms: a cold live cycle reads
  some 500 files.
- ``parquet``: ``SYMBOL.parquet``, the metadata in the schema (the format of earlier releases).
- ``csv``: ``SYMBOL.csv``, the same two header lines, then the bars with every float written to round-trip exactly.

A file in another of the formats (a cache made by an earlier release) is still read, and is replaced by the
cache's own format the next time that symbol is written.

Example:
    >>> import tempfile, datetime as dt, pandas as pd
    >>> cache = PriceCache(tempfile.mkdtemp())
    >>> bars = pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [10]},
    ...                     index=pd.to_datetime(["2024-01-02"]))
    >>> _ = cache.write("AAA", bars, covered=(dt.date(2024, 1, 1), dt.date(2024, 1, 5)), fetched_at="2024-01-06T00:00:00+00:00")
    >>> cache.missing("AAA", dt.date(2024, 1, 1), dt.date(2024, 1, 10))
    [(datetime.date(2024, 1, 6), datetime.date(2024, 1, 10))]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketdata.bars import parse_interval
from marketdata.errors import DataError

ENV_VAR = "PROPHETTREND_CACHE"
_META_KEY = b"prophettrend"
_FORMAT = 1
_SAFE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-^=]{0,19}$")  # tickers, class shares (BRK.B), indices (^GSPC)


class CacheCorruptError(DataError):
    """A cache file exists but cannot be read; it is left in place for the user to inspect or remove."""


def default_cache_dir() -> Path:
    """``$PROPHETTREND_CACHE`` if set, else the platform's user cache folder for ``prophettrend``.

    Example:
        >>> import os
        >>> saved = os.environ.get(ENV_VAR)
        >>> os.environ[ENV_VAR] = "/tmp/pt-cache-example"
        >>> str(default_cache_dir())
        '/tmp/pt-cache-example'
        >>> _ = os.environ.pop(ENV_VAR) if saved is None else os.environ.update({ENV_VAR: saved})
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("prophettrend"))


@dataclass(frozen=True)
class BarColumns:
    """Bars as numpy columns: the index (``datetime64``, sorted) and one read-only array per column.

    What the cache remembers of a file, and what a provider slices a window from: 500 symbols are read and cut
    without building 500 DataFrames (pandas costs some 0.1-0.3 ms per frame; the arrays cost microseconds).

    >>> bars = pd.DataFrame({"close": [1.0, -1.0, 3.0], "volume": [1, 2, 3]},
    ...                     index=pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]).rename("date"))
    >>> cols = BarColumns.from_frame(bars)
    >>> w = cols.window(pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-05"))   # a positive close only
    >>> len(w), w.column("close").tolist(), w.frame().index.strftime("%m-%d").tolist()
    (1, [3.0], ['01-04'])
    """

    index: np.ndarray
    names: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]
    index_name: str | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "BarColumns":
        """The columns of ``frame`` (copied, then frozen: nothing can change what the cache remembers)."""
        stamps = pd.DatetimeIndex(frame.index)
        index = np.array((stamps.tz_localize(None) if stamps.tz is not None else stamps).to_numpy())  # wall time
        arrays = tuple(np.array(frame.iloc[:, i].to_numpy()) for i in range(frame.shape[1]))
        for a in (index, *arrays):
            a.flags.writeable = False
        return cls(index, tuple(str(c) for c in frame.columns), arrays, frame.index.name)

    def __len__(self) -> int:
        return len(self.index)

    def column(self, name: str) -> np.ndarray | None:
        """The array of ``name``, ``None`` if there is no such column."""
        return self.arrays[self.names.index(name)] if name in self.names else None

    def frame(self) -> pd.DataFrame:
        """A DataFrame of its own (the arrays are copied)."""
        return pd.DataFrame({n: a.copy() for n, a in zip(self.names, self.arrays)},
                            index=pd.DatetimeIndex(self.index.copy(), name=self.index_name), columns=list(self.names))

    def rows(self, keep: slice | np.ndarray) -> "BarColumns":
        return BarColumns(self.index[keep], self.names, tuple(a[keep] for a in self.arrays), self.index_name)

    def window(self, start: pd.Timestamp, stop: pd.Timestamp) -> "BarColumns":
        """The rows with ``start <= index < stop`` and a positive close (a missing close is not a bar)."""
        lo, hi = (np.datetime64(t.to_datetime64(), "ns").astype(self.index.dtype) for t in (start, stop))
        if len(self.index) < 2 or bool((self.index[1:] >= self.index[:-1]).all()):
            cut = self.rows(slice(int(self.index.searchsorted(lo, "left")), int(self.index.searchsorted(hi, "left"))))
        else:
            cut = self.rows((self.index >= lo) & (self.index < hi))
        close = cut.column("close")
        if close is None:
            return cut.rows(slice(0, 0))
        keep = close > 0  # NaN compares False: the missing closes go too
        return cut if keep.all() else cut.rows(keep)


class CachedBars:
    """What the cache holds for one symbol: the bars, the calendar range asked for, and when it was fetched.

    ``columns`` is what was read; ``bars`` is a DataFrame of its own, built the first time it is asked for."""

    def __init__(self, symbol: str, columns: BarColumns, covered: tuple[dt.date, dt.date] | None,
                 fetched_at: str | None, path: Path) -> None:
        self.symbol, self.columns, self.covered, self.fetched_at, self.path = symbol, columns, covered, fetched_at, path

    @cached_property
    def bars(self) -> pd.DataFrame:
        return self.columns.frame()


def cache_kind(source: str, interval: str = "1d", adjustment: str = "adjusted", *, feed: str | None = None,
               extended: bool = False) -> str:
    """The folder name for one source, feed, bar size, adjustment and session choice.

    >>> cache_kind("yahoo"), cache_kind("yahoo", "15m", "raw"), cache_kind("alpaca", "1m", "all", feed="sip", extended=True)
    ('yahoo-daily-adjusted', 'yahoo-15m-raw', 'alpaca-sip-1m-all-extended')
    """
    name = parse_interval(interval).name
    parts = [source] + ([feed] if feed else []) + ["daily" if name == "1d" else name, adjustment]
    return "-".join(parts) + ("-extended" if extended and name != "1d" else "")


class PriceCache:
    """Bars per symbol under ``root/<kind>/`` (default kind: ``yahoo-daily-adjusted`` or ``yahoo-daily-raw``;
    ``interval`` picks Yahoo's intraday folders, ``kind`` any other, see :func:`cache_kind`)."""

    def __init__(self, root: str | Path | None = None, *, adjusted: bool = True, interval: str = "1d",
                 kind: str | None = None, file_format: str | None = None) -> None:
        self.file_format = file_format or default_format()
        if self.file_format not in _SUFFIX:
            raise ValueError(f"cache format must be one of {', '.join(_SUFFIX)}, got {self.file_format!r}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.adjusted = adjusted
        self.interval = parse_interval(interval).name
        self.kind = kind or cache_kind("yahoo", self.interval, "adjusted" if adjusted else "raw")
        self.folder = self.root / self.kind

    def path(self, symbol: str) -> Path:
        symbol = symbol.strip().upper()
        if not _SAFE.match(symbol):
            raise DataError(f"invalid symbol {symbol!r} (letters, digits, '.', '-', '^', '=' only)")
        return self.folder / f"{symbol}{_SUFFIX[self.file_format]}"

    def _existing(self, symbol: str) -> tuple[Path, str, os.stat_result] | None:
        """The file that holds ``symbol``, its format and its stat: the cache's own format first, else one an
        earlier release wrote (``None`` if there is none)."""
        own = self.path(symbol)
        for fmt in (self.file_format, *(f for f in _SUFFIX if f != self.file_format)):
            path = own if fmt == self.file_format else own.with_suffix(_SUFFIX[fmt])
            try:
                return path, fmt, path.stat()
            except FileNotFoundError:
                continue
        return None

    def read(self, symbol: str) -> CachedBars | None:
        """The cached bars of ``symbol``, ``None`` if there are none; :class:`CacheCorruptError` if unreadable."""
        found = self._existing(symbol)
        if found is None:
            return None
        path, fmt, st = found
        # A warm Lambda container (or one cycle asking twice) reads an unchanged file once: the memo is keyed by
        # the file's identity, and every write is a rename to a new inode, so a changed file is always re-read.
        stamp = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
        seen = _READS.get(stamp[0])
        if seen is not None and seen[0] == stamp:
            _READS.move_to_end(stamp[0])
            meta, columns = seen[1], seen[2]
        else:
            meta, columns = self._read_file(path, symbol, fmt)
            _READS[stamp[0]] = (stamp, meta, columns)
            while len(_READS) > _READS_KEPT:
                _READS.popitem(last=False)
        covered = meta.get("covered")
        return CachedBars(
            symbol=symbol.upper(),
            columns=columns,
            covered=(dt.date.fromisoformat(covered[0]), dt.date.fromisoformat(covered[1])) if covered else None,
            fetched_at=meta.get("fetched_at"),
            path=path,
        )

    def _read_file(self, path: Path, symbol: str, fmt: str) -> tuple[dict[str, Any], BarColumns]:
        try:
            meta, columns = _READERS[fmt](path)
            if not isinstance(columns, BarColumns):
                columns = BarColumns.from_frame(columns)
            index = self._index(columns.index)
        except Exception as exc:  # pyarrow, numpy and pandas raise several types for a damaged file
            raise CacheCorruptError(
                f"cache file {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                f"it was left in place: move it away or run `python -m marketdata clear --symbols {symbol.upper()}`"
            ) from None
        return meta, BarColumns(columns.index if index is None else index, columns.names, columns.arrays,
                                "date" if self.interval == "1d" else "timestamp")

    def write(self, symbol: str, bars: pd.DataFrame, *, covered: tuple[dt.date, dt.date] | None,
              fetched_at: str, extra: dict[str, Any] | None = None) -> Path:
        """Replace the file of ``symbol`` atomically (write a temporary file, fsync, rename)."""
        path = self.path(symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = bars.sort_index()
        frame.index = self._frame_index(frame.index)
        meta = {"format": _FORMAT, "symbol": symbol.upper(), "adjusted": self.adjusted, "fetched_at": fetched_at,
                "covered": [covered[0].isoformat(), covered[1].isoformat()] if covered else None,
                **({"interval": self.interval} if self.interval != "1d" else {}), **(extra or {})}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                _WRITERS[self.file_format](handle, frame, meta)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The new file holds everything the old one did (the provider merges before it writes): a file of another
        # format for this symbol would now only shadow nothing and confuse `symbols()`, so it goes.
        for fmt, suffix in _SUFFIX.items():
            if fmt != self.file_format:
                path.with_suffix(suffix).unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return path

    def _frame_index(self, index) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(index)
        if self.interval == "1d":
            if index.tz is None and index.freq is None and _at_midnight(index.values):
                return index.rename("date")  # what normalize() gives, without its per-file cost
            return index.normalize().rename("date")
        return index.rename("timestamp")  # bar start times are kept as they are (naive New York time)

    def _index(self, values: np.ndarray) -> np.ndarray | None:
        """A read index as the cache serves it (daily: midnights), or ``None`` when it already is."""
        if self.interval != "1d" or (values.dtype.kind == "M" and _at_midnight(values)):
            return None
        index = np.array(pd.DatetimeIndex(values).normalize().to_numpy())
        index.flags.writeable = False
        return index

    def missing(self, symbol: str, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
        """Calendar ranges within ``start..end`` not yet asked for; the covered range stays one piece, so a
        request far after it also fills the gap in between."""
        if start > end:
            return []
        return missing_ranges(self.read(symbol), start, end)

    def symbols(self) -> list[str]:
        """Symbols with a cache file (temporary files left by a crash are not counted)."""
        if not self.folder.is_dir():
            return []
        return sorted({p.stem for suffix in _SUFFIX.values() for p in self.folder.glob(f"*{suffix}")
                       if not p.name.startswith(".")})

    def describe(self, symbol: str) -> dict[str, Any]:
        """One symbol's file, size, covered range, bar dates and fetch time (a Parquet file: only its footer)."""
        found = self._existing(symbol)
        path, fmt = found[:2] if found is not None else (self.path(symbol), self.file_format)
        row: dict[str, Any] = {"symbol": symbol, "path": str(path), "bytes": path.stat().st_size}
        try:
            if fmt != "parquet":
                meta, bars = _READERS[fmt](path)
                rows = len(bars)
            else:
                import pyarrow.parquet as pq

                parquet = pq.ParquetFile(path)
                meta = json.loads((parquet.schema_arrow.metadata or {}).get(_META_KEY, b"{}"))
                rows = parquet.metadata.num_rows
            row.update(rows=rows, covered=meta.get("covered"), fetched_at=meta.get("fetched_at"))
        except Exception as exc:
            row.update(error=f"unreadable ({type(exc).__name__})")
        return row

    def stray_temporaries(self) -> list[Path]:
        """Temporary files left behind by an interrupted write (harmless; ``clear`` removes them)."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(".*.tmp"))

    def clear(self, symbols: list[str] | None = None) -> int:
        """Delete the files of ``symbols`` (all, with temporaries, if ``None``); returns how many were removed."""
        if symbols is None:
            count = len(self.symbols()) + len(self.stray_temporaries())
            if self.folder.is_dir():
                shutil.rmtree(self.folder)
            return count
        count = 0
        for symbol in symbols:
            path = self.path(symbol)
            removed = False
            for suffix in _SUFFIX.values():
                if path.with_suffix(suffix).exists():
                    path.with_suffix(suffix).unlink()
                    removed = True
            count += removed
        return count


_SUFFIX = {"npy": ".npy", "parquet": ".parquet", "csv": ".csv"}
_READS: "OrderedDict[str, tuple[tuple, dict[str, Any], BarColumns]]" = OrderedDict()  # path -> (identity, meta, columns)
_READS_KEPT = 2048  # files remembered per process (an S&P 500 universe is about 500 per kind)
_CSV_MARK = "#prophettrend "


def _at_midnight(values: np.ndarray) -> bool:
    return bool((values == values.astype("datetime64[D]").astype(values.dtype)).all())


def default_format() -> str:
    """``npy``: numpy's own format, which every home has (the Lambda layer has no pyarrow) and which reads fastest.

    >>> default_format()
    'npy'
    """
    return "npy"


def _write_parquet(handle, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=True)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, handle)


def _read_parquet(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    import pyarrow.parquet as pq

    # One small file per symbol: pyarrow's thread pools cost more than they save here (a cold cycle reads 500
    # files: 0.7 ms each instead of 2 ms; the same table and metadata).
    table = pq.ParquetFile(path).read(use_threads=False)
    return json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}")), table.to_pandas(use_threads=False)


def _write_csv(handle, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    # pandas writes floats with repr (the shortest text that reads back as the same double): no digit is lost.
    handle.write((_CSV_MARK + json.dumps(meta) + "\n").encode())
    dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
    handle.write((_CSV_MARK + json.dumps({"dtypes": dtypes}) + "\n").encode())
    handle.write(frame.to_csv(index_label=frame.index.name or "index", date_format="%Y-%m-%d %H:%M:%S").encode())


def _read_csv(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    with open(path, encoding="utf-8") as handle:
        first, second = handle.readline(), handle.readline()
        if not (first.startswith(_CSV_MARK) and second.startswith(_CSV_MARK)):
            raise ValueError("no prophettrend header")
        meta = json.loads(first[len(_CSV_MARK):])
        dtypes = json.loads(second[len(_CSV_MARK):])["dtypes"]
        bars = pd.read_csv(handle, index_col=0, dtype=dtypes, float_precision="round_trip")
    if list(bars.columns) != list(dtypes):
        raise ValueError("columns differ from the header")
    bars.index = pd.DatetimeIndex(pd.to_datetime(bars.index, format="%Y-%m-%d %H:%M:%S"), name=bars.index.name)
    return meta, bars


_INDEX_FIELD = "__index__"


def _write_npy(handle, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    if _INDEX_FIELD in frame.columns or frame.columns.duplicated().any():
        raise ValueError(f"columns must be unique and not named {_INDEX_FIELD!r}")
    index = pd.DatetimeIndex(frame.index).to_numpy()  # its own unit: a file reads back exactly what was written
    fields = [(_INDEX_FIELD, index.dtype)] + [(str(c), frame[c].dtype) for c in frame.columns]
    if any(np.dtype(t).hasobject for _, t in fields):
        raise ValueError("the npy cache holds numeric columns only")  # object fields would need pickle to read
    table = np.empty(len(frame), dtype=fields)
    table[_INDEX_FIELD] = index
    for c in frame.columns:
        table[str(c)] = frame[c].to_numpy()
    handle.write((_CSV_MARK + json.dumps(meta) + "\n").encode())
    handle.write((_CSV_MARK + json.dumps({"index": frame.index.name}) + "\n").encode())
    np.save(handle, table, allow_pickle=False)


def _read_npy(path: Path) -> tuple[dict[str, Any], "BarColumns"]:
    mark = _CSV_MARK.encode()
    with open(path, "rb") as handle:
        first, second = handle.readline(), handle.readline()
        if not (first.startswith(mark) and second.startswith(mark)):
            raise ValueError("no prophettrend header")
        meta = json.loads(first[len(mark):])
        index_name = json.loads(second[len(mark):])["index"]
        table = np.load(handle, allow_pickle=False)
    names = table.dtype.names or ()
    if table.ndim != 1 or not names or names[0] != _INDEX_FIELD:
        raise ValueError("not a table of bars")
    table.flags.writeable = False  # the fields are views of this one buffer: frozen, as the cache keeps them
    return meta, BarColumns(table[_INDEX_FIELD], tuple(names[1:]), tuple(table[n] for n in names[1:]), index_name)


_READERS = {"npy": _read_npy, "parquet": _read_parquet, "csv": _read_csv}
_WRITERS = {"npy": _write_npy, "parquet": _write_parquet, "csv": _write_csv}


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk; not every platform allows this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def missing_ranges(cached, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Calendar ranges within ``start..end`` outside what ``cached`` (a read entry, or ``None``) covers."""
    if cached is None or cached.covered is None:
        return [(start, end)]
    lo, hi = cached.covered
    one = dt.timedelta(days=1)
    gaps = []
    if start < lo:
        gaps.append((start, lo - one))
    if end > hi:
        gaps.append((hi + one, end))
    return gaps
