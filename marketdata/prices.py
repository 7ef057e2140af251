"""A validated table of daily prices with its provenance.

Everything that produces prices (the bundled sample, CSV files, yfinance) returns a :class:`PriceData`, and
everything that consumes prices (backtests, the live cycle) accepts one. Validation happens once, here.

Example:
    >>> import pandas as pd
    >>> closes = pd.DataFrame({"AAA": [1.0, 1.1]}, index=pd.to_datetime(["2022-01-03", "2022-01-04"]))
    >>> data = PriceData.from_closes(closes, source="example")
    >>> data.symbols, len(data)
    (['AAA'], 2)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import pandas as pd

from marketdata.errors import DataError


def content_hash(frames: Iterable[pd.DataFrame | None]) -> str:
    """A stable SHA-256 of the values, dates and symbols of the given frames (``None`` entries are skipped)."""
    digest = hashlib.sha256()
    for frame in frames:
        if frame is None:
            continue
        digest.update(json.dumps([str(c) for c in frame.columns]).encode())
        if isinstance(frame.index, pd.DatetimeIndex):
            # pandas 3 keeps whatever resolution a loader produced (s, ms, us, ns); hash one resolution only
            days = np.asarray(frame.index.values.astype("datetime64[ns]").astype("int64"))
        else:
            days = np.asarray(frame.index)
        digest.update(days.tobytes())
        digest.update(np.ascontiguousarray(frame.to_numpy(dtype="float64")).tobytes())
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class PriceData:
    """Daily bars as wide frames (rows: dates, columns: symbols). ``opens``, ``highs`` and ``lows`` are ``None``
    for closes-only data (the bundled sample); stops are then simulated on closes (see ``backtests``).

    ``provenance`` says where the numbers came from: ``source``, ``adjusted`` (splits and dividends folded in),
    ``fetched_at`` and ``content_hash``; backtests copy it into ``summary.json`` and live runs into the journal.
    """

    closes: pd.DataFrame
    opens: pd.DataFrame | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    highs: pd.DataFrame | None = None
    lows: pd.DataFrame | None = None
    interval: str = "1d"  # "1d": rows are dates; intraday ("1m" "5m" "15m" "1h"): naive New York bar starts

    @property
    def intraday(self) -> bool:
        """Whether rows are intraday bars (see ``marketdata.bars``) rather than days."""
        return self.interval != "1d"

    @property
    def has_ranges(self) -> bool:
        """Whether every bar's high and low are known (stops can then trigger inside the bar)."""
        return self.highs is not None and self.lows is not None

    @classmethod
    def from_closes(
        cls,
        closes: pd.DataFrame,
        *,
        opens: pd.DataFrame | None = None,
        highs: pd.DataFrame | None = None,
        lows: pd.DataFrame | None = None,
        source: str,
        adjusted: bool | None = None,
        fetched_at: str | None = None,
        origin: str = "",
        extra: dict[str, Any] | None = None,
        interval: str = "1d",
    ) -> "PriceData":
        """Validate ``closes`` (and ``opens``, ``highs``, ``lows``) and attach provenance; raises :class:`DataError`.

        Highs and lows are kept only when both are given; missing values are filled from the open and close, so
        ``low <= min(open, close)`` and ``high >= max(open, close)`` hold on every bar.

        ``interval`` other than ``"1d"`` keeps the timestamps (as naive New York times, see ``marketdata.bars``)
        instead of normalising them to dates, and records ``interval``, ``first_bar`` and ``last_bar``.
        """
        from marketdata.bars import parse_interval

        interval = parse_interval(interval).name
        closes = _validated(closes, "close", origin, interval)
        if opens is not None:
            opens = _validated(opens, "open", origin, interval).reindex(index=closes.index, columns=closes.columns)
        if highs is not None and lows is not None:
            highs = _validated(highs, "high", origin, interval).reindex(index=closes.index, columns=closes.columns)
            lows = _validated(lows, "low", origin, interval).reindex(index=closes.index, columns=closes.columns)
            top = closes if opens is None else np.fmax(closes, opens.fillna(closes))
            bottom = closes if opens is None else np.fmin(closes, opens.fillna(closes))
            highs = np.fmax(highs.fillna(top), top).where(closes.notna())
            lows = np.fmin(lows.fillna(bottom), bottom).where(closes.notna())
        else:
            highs = lows = None
        provenance: dict[str, Any] = {
            "source": source,
            "adjusted": adjusted,
            "fetched_at": fetched_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "content_hash": content_hash([closes, opens, highs, lows]),
            "first_date": closes.index[0].date().isoformat(),
            "last_date": closes.index[-1].date().isoformat(),
        }
        if interval != "1d":
            provenance.update(_bar_span(closes), interval=interval)
        provenance.update(extra or {})
        return cls(closes=closes, opens=opens, provenance=provenance, highs=highs, lows=lows, interval=interval)

    @property
    def symbols(self) -> list[str]:
        return [str(c) for c in self.closes.columns]

    def __len__(self) -> int:
        return len(self.closes)

    def select(self, symbols: Iterable[str]) -> "PriceData":
        """Only the given symbols, in the given order; unknown symbols raise :class:`DataError`."""
        wanted = [s.strip().upper() for s in symbols if s.strip()]
        if not wanted:
            raise DataError("no symbols given")
        missing = [s for s in wanted if s not in self.closes.columns]
        if missing:
            raise DataError(f"unknown symbol(s) {', '.join(missing)}; the data has {', '.join(self.symbols)}")
        return self._derived(self.closes[wanted], *(None if f is None else f[wanted] for f in self._extras()))

    def between(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> "PriceData":
        """Rows with ``start <= date <= end`` (either bound may be ``None``)."""
        mask = np.ones(len(self.closes), dtype=bool)
        if start is not None:
            mask &= self.closes.index >= start
        if end is not None:
            mask &= self.closes.index <= end
        return self._derived(self.closes.loc[mask], *(None if f is None else f.loc[mask] for f in self._extras()))

    def _extras(self) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]:
        return self.opens, self.highs, self.lows

    def _derived(self, closes: pd.DataFrame, opens: pd.DataFrame | None, highs: pd.DataFrame | None = None,
                 lows: pd.DataFrame | None = None) -> "PriceData":
        provenance = dict(self.provenance)
        provenance["content_hash"] = content_hash([closes, opens, highs, lows])
        if len(closes):
            provenance["first_date"] = closes.index[0].date().isoformat()
            provenance["last_date"] = closes.index[-1].date().isoformat()
            if self.intraday:
                provenance.update(_bar_span(closes))
        return replace(self, closes=closes, opens=opens, highs=highs, lows=lows, provenance=provenance)


def _bar_span(closes: pd.DataFrame) -> dict[str, str]:
    return {"first_bar": closes.index[0].isoformat(), "last_bar": closes.index[-1].isoformat()}


def _validated(frame: pd.DataFrame, what: str, origin: str, interval: str = "1d") -> pd.DataFrame:
    where = f" in {origin}" if origin else ""
    if frame.empty or frame.shape[1] == 0:
        raise DataError(f"no {what} prices{where}")
    index = pd.DatetimeIndex(frame.index)
    if interval == "1d":
        if index.tz is not None:
            index = index.tz_localize(None)
        index = index.normalize()
    else:
        from marketdata.bars import new_york_naive

        index = new_york_naive(index)
    if index.hasnans:
        raise DataError(f"unparseable date{where}")
    duplicated = index[index.duplicated()]
    if len(duplicated):
        shown = duplicated[0].date() if interval == "1d" else duplicated[0]
        raise DataError(f"duplicate {'date' if interval == '1d' else 'timestamp'} {shown}{where}")
    if all(dtype.kind in "fiu" and isinstance(dtype, np.dtype) for dtype in frame.dtypes):
        # Plain numpy numbers (every provider's case): pd.to_numeric would return each column unchanged, so one
        # conversion of the whole block replaces 500 per-column calls with the same values and the same checks.
        # One block laid out as apply's result is (symbol by symbol, each column's days contiguous): a CSV is
        # read as one block per column, and sums across symbols must add in the same order as before.
        block = np.ascontiguousarray(frame.to_numpy(dtype="float64").T).T
        numeric = pd.DataFrame(block, index=frame.index, columns=frame.columns)
    else:
        numeric = frame.apply(pd.to_numeric, errors="coerce")
        bad = numeric.isna() & frame.notna()
        if bad.to_numpy().any():
            row, col = np.argwhere(bad.to_numpy())[0]
            raise DataError(
                f"non-numeric {what} price {frame.iat[row, col]!r} for {frame.columns[col]} on {index[row].date()}"
                f"{where}"
            )
        numeric = numeric.astype("float64")
    values = numeric.to_numpy()
    infinite = np.isinf(values)
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise DataError(f"non-finite {what} price {numeric.iat[row, col]} for {frame.columns[col]} on "
                        f"{index[row].date()}{where}")
    if (values <= 0).any():
        row, col = np.argwhere(values <= 0)[0]
        raise DataError(f"non-positive {what} price for {frame.columns[col]} on {index[row].date()}{where}")
    numeric.index = index
    numeric.index.name = "date" if interval == "1d" else "timestamp"
    numeric.columns = [str(c).strip().upper() for c in numeric.columns]
    twice = numeric.columns[numeric.columns.duplicated()]
    if len(twice):
        raise DataError(f"duplicated column {twice[0]} (symbols are case-insensitive){where}")
    if not numeric.index.is_monotonic_increasing:
        numeric = numeric.sort_index()
    empty_columns = np.isnan(numeric.to_numpy()).all(axis=0)
    if empty_columns.any():
        empty = [c for c, none in zip(numeric.columns, empty_columns) if none]
        raise DataError(f"no {what} prices for {', '.join(empty)}{where}")
    return numeric
