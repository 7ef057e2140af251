"""Daily and intraday bars from Yahoo Finance (yfinance), through a durable on-disk cache.

:class:`YahooProvider` implements :class:`marketdata.provider.PriceProvider`. For each symbol it asks the cache
which calendar ranges are missing, downloads only those with ``yf.download`` (symbols sharing a range go in one
batched call, ``auto_adjust`` always passed explicitly), and writes the result back atomically.

**Intraday** (``interval`` ``1m 5m 15m 1h``; daily is ``1d``): bars are stamped with their start in New York
wall-clock time (see ``marketdata.bars``), regular-hours only unless ``extended`` (then Yahoo's pre- and
post-market, 04:00-20:00), kept in their own cache folder per bar size (``yahoo-15m-adjusted``, ...). Yahoo
serves them only so far back (:data:`INTRADAY_LIMITS`: 1m bars for the last 30 days, at most 7 days per request,
so 1m ranges are fetched in 7-day chunks; 5m and 15m for 60 days; 1h for 730 days). A missing range beyond that
is refused before anything is asked, with one line naming the interval and the limit; what the cache already
holds is still served, also offline. Yahoo split-adjusts intraday bars but does not dividend-adjust them
(``auto_adjust`` changes nothing there); the provenance says so.

What can go wrong, and what happens:

* **unknown or delisted symbol** (Yahoo answers 404): named in the error, never a silent empty column;
* **rate limiting** (HTTP 429, ``YFRateLimitError``) and server errors: the affected symbols are retried with
  exponential backoff (tenacity), then reported by name;
* **no network**: no retry storm; symbols whose window is cached are served from the cache (marked
  ``incomplete`` in the provenance if part of the window could not be fetched), the others are named;
* **corrupt cache file**: named with its path and left in place, never overwritten or deleted;
* **split or dividend since the last fetch** (adjusted prices move retroactively): each incremental fetch
  overlaps the cache by one bar, and a mismatch refetches that symbol's whole cached range (daily bars; intraday
  bars are kept as Yahoo served them, on the split basis of their ``fetched_at``);
* **any other refusal** (HTTP 4xx such as 422, Yahoo's answer to a range it will not serve): named as
  ``refused`` with Yahoo's reason, never cached as an empty range.

How a failure is classified: yfinance swallows per-symbol errors into log lines, so the provider gives yfinance
its own curl_cffi session subclass that records, per symbol, what Yahoo's chart endpoint answered (an HTTP status
or a transport error). That record, not log text, decides between "unknown", "rate limited" and "offline".

Example (offline, so it runs anywhere; ``fetch`` would download what ``missing`` lists):
    >>> import tempfile, datetime as dt
    >>> provider = YahooProvider(cache_dir=tempfile.mkdtemp(), offline=True)
    >>> report = provider.fetch(["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    >>> report.failed
    {'AAPL': 'offline'}
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from curl_cffi import requests as curl_requests

from marketdata.bars import Interval, keep_session, parse_interval
from marketdata.cache import BarColumns, CacheCorruptError, PriceCache, cache_kind, missing_ranges
from marketdata.errors import DataError
from marketdata.fetching import as_date as _as_date, empty_bars as _empty_bars, last_bars, start_for_bars
from marketdata.fetching import unique_symbols as _unique_symbols
from marketdata.prices import PriceData
from marketdata.symbols import INVALID, describe_missing, split_symbols, with_missing

log = logging.getLogger(__name__)

SOURCE = "yfinance (Yahoo Finance daily bars)"
INTRADAY_SOURCE = "yfinance (Yahoo Finance {interval} bars)"


@dataclass(frozen=True)
class YahooLimit:
    """How far back Yahoo serves one bar size (``lookback_days``) and how many days one request may span."""

    lookback_days: int
    days_per_request: int | None = None


# Yahoo's answers beyond these are HTTP 422 ("... The requested range must be within the last 30 days.",
# "Only 8 days worth of 1m granularity data are allowed to be fetched per request."); 7-day 1m chunks stay
# clear of the per-request rule, which has been 7 days in the past.
INTRADAY_LIMITS: dict[str, YahooLimit] = {"1m": YahooLimit(30, 7), "5m": YahooLimit(60), "15m": YahooLimit(60),
                                          "1h": YahooLimit(730)}
OFFLINE_ENV_VAR = "PROPHETTREND_OFFLINE"
_NEW_YORK = ZoneInfo("America/New_York")
_ONE_DAY = dt.timedelta(days=1)
# yfinance keeps one global session and cookie (YfData is a singleton): one download at a time per process.
_YF_LOCK = threading.Lock()
_COLUMNS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close", "Volume": "volume"}
TRANSIENT = ("rate_limited", "server", "network")
REASONS = {
    "unknown": "unknown or delisted on Yahoo",
    "no_bars": "no bars in the window (not listed yet, or delisted)",
    "rate_limited": "Yahoo rate limit, HTTP 429, still refused after retries",
    "server": "Yahoo server error, still failing after retries",
    "network": "not cached, and Yahoo could not be reached",
    "offline": "not cached, and offline mode is on",
    "corrupt": "cache file unreadable",
    "refused": "refused by Yahoo",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per batch for rate-limited, server-error and network failures; waits grow exponentially."""

    attempts: int = 4
    first_wait: float = 2.0
    max_wait: float = 30.0


@dataclass
class FetchReport:
    """What one :meth:`YahooProvider.fetch` did: the bars per symbol in the window, and what failed and why."""

    start: dt.date
    end: dt.date
    windows: dict[str, BarColumns] = field(default_factory=dict)  # symbol -> its bars in the window, as columns
    fetched_at: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> a key of REASONS
    incomplete: dict[str, str] = field(default_factory=dict)  # served from cache, part of the window missing
    downloaded: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    downloads: int = 0  # yf.download calls made
    cache_write_errors: dict[str, str] = field(default_factory=dict)
    unsaved: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict, repr=False)  # cache not writable
    interval: str = "1d"
    extended: bool = False
    restart: dict[str, tuple[dt.date, dt.date]] = field(default_factory=dict, repr=False)  # see _check_limits

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """The bars per symbol in the window, as DataFrames of their own (built when asked for: a provider
        assembles :class:`PriceData` from ``windows`` without them)."""
        return {symbol: window.frame() for symbol, window in self.windows.items()}

    def failure_summary(self) -> str:
        """One line naming every failed symbol by reason, and how many loaded."""
        by_reason: dict[str, list[str]] = defaultdict(list)
        for symbol, reason in sorted(self.failed.items()):
            by_reason[reason].append(symbol)
        parts = []
        for reason, symbols in by_reason.items():
            shown = ", ".join(symbols[:12]) + (f" and {len(symbols) - 12} more" if len(symbols) > 12 else "")
            why = REASONS.get(reason, reason)
            if reason == "refused" and self.details.get(symbols[0]):
                why = f"{why}: {self.details[symbols[0]]}"
            parts.append(f"{shown} ({why})")
        if "corrupt" in by_reason:
            parts.append(self.details[by_reason["corrupt"][0]])
        text = "; ".join(parts) if parts else "nothing failed"
        loaded = f"{len(self.windows)} other symbol(s) loaded" if self.windows else "nothing else loaded"
        return f"{text}; {loaded}"


class _ObservedSession(curl_requests.Session):
    """The curl_cffi session yfinance uses, remembering per symbol what the chart endpoint answered."""

    def __init__(self) -> None:
        super().__init__(impersonate="chrome")
        self._notes_lock = threading.Lock()
        self.outcomes: dict[str, list[str]] = defaultdict(list)

    def request(self, method, url, *args, **kwargs):  # noqa: D102 - same contract as curl_cffi
        symbol = _chart_symbol(url)
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as exc:
            if symbol:
                self._note(symbol, f"network {type(exc).__name__}: {str(exc)[:160]}")
            raise
        if symbol:
            self._note(symbol, f"http {response.status_code}")
        return response

    def _note(self, symbol: str, what: str) -> None:
        with self._notes_lock:
            self.outcomes[symbol].append(what)


def _chart_symbol(url: str) -> str | None:
    path = urlparse(str(url)).path
    marker = "/finance/chart/"
    if marker not in path:
        return None
    return unquote(path.split(marker, 1)[1].strip("/")).upper() or None


def _classify(notes: list[str], got_rows: bool) -> str:
    if got_rows:
        return "ok"
    if any(n.startswith("network") for n in notes):
        return "network"
    if "http 429" in notes:
        return "rate_limited"
    if any(n.startswith("http 5") for n in notes):
        return "server"
    if "http 404" in notes:
        return "unknown"
    if notes and notes[-1].startswith("http 4"):
        # Yahoo refuses a request it will not serve (422 for a range beyond its intraday limits) with an error
        # body and no bars: that is not "no bars in the range", and must not be cached as such.
        return "refused"
    return "empty" if notes else "network"


def yahoo_symbol(symbol: str) -> str:
    """Yahoo's spelling of a ticker: class shares use '-' (``BRK.B`` -> ``BRK-B``).

    Example:
        >>> yahoo_symbol("brk.b"), yahoo_symbol("^GSPC")
        ('BRK-B', '^GSPC')
    """
    return symbol.strip().upper().replace(".", "-")


def _new_york_today() -> dt.date:
    return dt.datetime.now(_NEW_YORK).date()


@dataclass(frozen=True)
class _Job:
    """One fetch's bar size, session choice and cache folder."""

    spec: Interval
    extended: bool
    cache: PriceCache

    @property
    def intraday(self) -> bool:
        return self.spec.intraday


class YahooProvider:
    """Daily and intraday bars for many symbols from Yahoo Finance, cached on disk; see the module docstring.

    ``adjusted`` is passed to yfinance as ``auto_adjust`` (splits and dividends folded into OHLC);
    ``offline`` (or ``PROPHETTREND_OFFLINE=1``) serves the cache only, without touching the network.
    ``cache`` is the daily cache; :meth:`cache_for` gives the folder of any bar size.
    """

    name = "yfinance"

    def __init__(self, cache_dir: str | Path | None = None, *, adjusted: bool = True, batch_size: int = 50,
                 retry: RetryPolicy = RetryPolicy(), offline: bool | None = None, threads: bool | int = True,
                 timeout: float = 10.0, today: Callable[[], dt.date] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.cache = PriceCache(cache_dir, adjusted=adjusted)
        self.adjusted = adjusted
        self.batch_size = batch_size
        self.retry = retry
        self.offline = offline if offline is not None else os.environ.get(OFFLINE_ENV_VAR, "") not in ("", "0")
        self.threads = threads
        self.timeout = timeout
        self.today = today if today is not None else (lambda: _new_york_today())
        self._sleep = sleep
        self._session: _ObservedSession | None = None

    def cache_for(self, interval: str = "1d", extended: bool = False) -> PriceCache:
        """The cache folder of one bar size and session choice (``yahoo-15m-adjusted``, ...)."""
        spec = parse_interval(interval)
        if not spec.intraday:
            return self.cache
        kind = cache_kind("yahoo", spec.name, "adjusted" if self.adjusted else "raw", extended=extended)
        return PriceCache(self.cache.root, adjusted=self.adjusted, interval=spec.name, kind=kind)

    def earliest(self, interval: str) -> dt.date | None:
        """The first date Yahoo still serves ``interval`` bars for (``None``: no limit, daily bars).

        >>> YahooProvider(offline=True, today=lambda: dt.date(2024, 7, 31)).earliest("1m")
        datetime.date(2024, 7, 2)
        """
        limit = INTRADAY_LIMITS.get(parse_interval(interval).name)
        if limit is None:
            return None
        # Yahoo counts back from the moment of the request; a day that starts later than that still qualifies.
        return self.today() - dt.timedelta(days=limit.lookback_days - 1)

    # ----------------------------------------------------------------------------------------------------------
    # PriceProvider

    def history(self, symbols: Sequence[str], end: dt.date | dt.datetime, bars: int | None = None,
                start: dt.date | None = None, strict: bool = True, interval: str = "1d",
                extended: bool = False) -> PriceData:
        """Bars up to and including ``end``: the last ``bars`` rows, or from ``start``.

        Intraday: a date ``end`` includes that whole day, a datetime only the bars complete by then; a window
        computed from ``bars`` is cut at the first date Yahoo still serves (see :data:`INTRADAY_LIMITS`), an
        explicit ``start`` beyond it that the cache does not hold is an error.

        Raises :class:`DataError` naming every symbol that could not be had (and why); with ``strict=False`` those
        are dropped and listed in ``provenance["symbols_missing"]`` instead. Symbols served from the cache without
        their newest bars are listed in ``provenance["symbols_incomplete"]``.
        """
        spec = parse_interval(interval)
        end_day = _as_date(end)
        if start is None:
            if bars is None:
                raise DataError("yfinance history needs bars= or start=")
            start = start_for_bars(end_day, bars, spec, extended)
            earliest = self.earliest(spec.name)
            if earliest is not None and start < earliest and not self.offline:
                start = min(earliest, end_day)
        data = self.load(symbols, _as_date(start), end_day, strict=strict, interval=spec.name, extended=extended)
        return last_bars(data, spec, end, bars, "yfinance")

    # ----------------------------------------------------------------------------------------------------------

    def load(self, symbols: Sequence[str], start: dt.date, end: dt.date, *, strict: bool = True,
             progress: Callable[[int], None] | None = None, extra: dict | None = None, interval: str = "1d",
             extended: bool = False) -> PriceData:
        """Fetch what is missing and return the window as :class:`PriceData` with provenance.

        ``strict`` raises :class:`DataError` if any symbol failed; otherwise the failures, and junk symbols (empty,
        characters no ticker has), are dropped and listed in ``provenance["symbols_missing"]`` by reason (an error
        is still raised if nothing at all could be loaded).
        """
        junk: list[str] = []
        if not strict:
            # A junk symbol cannot even be a cache file name: leave it out and name it, as every provider does.
            symbols, junk = split_symbols(symbols)
            if not symbols:
                raise DataError(f"yfinance {start}..{end}: no symbol left: {describe_missing({INVALID: junk})}")
        report = self.fetch(symbols, start, end, progress=progress, interval=interval, extended=extended)
        if report.failed and (strict or not report.windows):
            also = f"; {describe_missing({INVALID: junk})}" if junk else ""
            what = "" if report.interval == "1d" else f"{report.interval} "
            raise DataError(f"yfinance {what}{start}..{end}: {report.failure_summary()}{also}")
        data = self.to_price_data(report, extra=extra)
        return with_missing(data, {INVALID: junk}) if junk else data

    def to_price_data(self, report: FetchReport, *, extra: dict | None = None) -> PriceData:
        if not report.windows:
            raise DataError(f"no prices from yfinance between {report.start} and {report.end}")
        order = list(report.windows)
        closes = wide_frame(report.windows, order, "close")
        closes.index = pd.DatetimeIndex(closes.index).as_unit("ns")  # one resolution, so the hash is stable
        opens = wide_frame(report.windows, order, "open", like=closes)
        opens = opens.where(opens > 0)
        ranges = {}
        for name in ("high", "low"):
            if all(name in report.windows[s].names for s in order):
                frame = wide_frame(report.windows, order, name, like=closes)
                ranges[name + "s"] = frame.where(frame > 0)
        missing: dict[str, list[str]] = defaultdict(list)
        for symbol, reason in sorted(report.failed.items()):
            missing[reason].append(symbol)
        intraday = report.interval != "1d"
        provenance_extra = {
            "provider": self.name,
            "auto_adjust": self.adjusted,
            "yfinance_version": _yfinance_version(),
            "cache_dir": str(self.cache.root),
            "window": [report.start.isoformat(), report.end.isoformat()],
            "symbols_missing": dict(missing),
            "symbols_incomplete": dict(sorted(report.incomplete.items())),
            "fetched_at_oldest": min(report.fetched_at.values()) if report.fetched_at else None,
        }
        if intraday:
            limit = INTRADAY_LIMITS[report.interval]
            provenance_extra.update(
                session="extended (04:00-20:00 New York)" if report.extended else "regular (XNYS sessions)",
                timestamps="bar start, New York wall-clock time",
                adjustment="split-adjusted by Yahoo as of fetched_at; intraday bars are not dividend-adjusted "
                           "(auto_adjust has no effect on them)",
                yahoo_limit={"lookback_days": limit.lookback_days, "days_per_request": limit.days_per_request})
        provenance_extra.update(extra or {})
        return PriceData.from_closes(
            closes, opens=opens, highs=ranges.get("highs"), lows=ranges.get("lows"),
            source=INTRADAY_SOURCE.format(interval=report.interval) if intraday else SOURCE,
            adjusted=self.adjusted,
            fetched_at=max(report.fetched_at.values()) if report.fetched_at else None,
            origin="yfinance", extra=provenance_extra, interval=report.interval,
        )

    def fetch(self, symbols: Iterable[str], start: dt.date, end: dt.date, *,
              progress: Callable[[int], None] | None = None, interval: str = "1d",
              extended: bool = False) -> FetchReport:
        """Fill the cache for ``symbols`` over ``start..end`` (only missing ranges) and read the window back.

        Intraday ranges Yahoo no longer serves raise :class:`DataError` before anything is asked (unless the
        cache holds them, or offline mode is on: then the cache is served as it is).
        """
        spec = parse_interval(interval)
        if spec.name not in ("1d", *INTRADAY_LIMITS):
            raise DataError(f"yfinance does not serve {spec.name} bars here: use 1m, 5m, 15m, 1h or 1d")
        job = _Job(spec, bool(extended) and spec.intraday, self.cache_for(spec.name, extended))
        start, end = _as_date(start), _as_date(end)
        if start > end:
            raise DataError(f"empty date range: start {start} is after end {end}")
        wanted = _unique_symbols(symbols)
        report = FetchReport(start=start, end=end, interval=spec.name, extended=job.extended)
        gaps: dict[str, list[tuple[dt.date, dt.date]]] = {}
        first_reads = {}
        for symbol in wanted:
            try:
                cached = first_reads[symbol] = job.cache.read(symbol)
            except CacheCorruptError as exc:
                report.failed[symbol] = "corrupt"
                report.details[symbol] = str(exc)
                continue
            if job.intraday:
                gaps[symbol] = [(lo, hi, cached) for lo, hi in missing_ranges(cached, start, end)]
            else:
                gaps[symbol] = [(*_widened(gap, cached), cached) for gap in missing_ranges(cached, start, end)]
        if job.intraday and not self.offline:
            gaps = self._check_limits(job, gaps, start, end)
        plan = self._plan(job, gaps, report)
        planned = {s for syms in plan.values() for s in syms}
        if progress is not None and len(wanted) > len(planned):
            progress(len(wanted) - len(planned))  # already cached (or unreadable): nothing to wait for
        unfetched: dict[str, str] = {}
        if plan and self.offline:
            unfetched = dict.fromkeys(planned, "offline")
            if progress is not None:
                progress(len(planned))
        elif plan:
            unfetched = self._fill(job, plan, report, progress)
        for symbol in wanted:
            if symbol in report.failed:
                continue
            # A symbol nothing was asked for is served from the read above: this fetch did not change its file.
            self._read_window(job, symbol, report, unfetched.get(symbol),
                              None if symbol in planned else first_reads.get(symbol, _UNREAD))
        return report

    # ----------------------------------------------------------------------------------------------------------

    def _check_limits(self, job: _Job, gaps, start: dt.date, end: dt.date):
        """The gaps Yahoo can still serve; one line naming the interval, the limit and the symbols if the
        requested window reaches back beyond it and the cache does not hold that part.

        A gap that starts before the limit only because the cache's covered range ends long ago (the request
        itself starts later) is cut at the limit; its first chunk then starts a new covered range (the old bars
        stay in the file)."""
        earliest = self.earliest(job.spec.name)
        beyond = sorted(s for s, ranges in gaps.items() if any(lo < earliest and start < earliest
                                                               for lo, _, _ in ranges))
        if not beyond:
            cut = {}
            for symbol, ranges in gaps.items():
                cut[symbol] = []
                for lo, hi, cached in ranges:
                    if lo < earliest:
                        if hi < earliest:
                            continue
                        lo, cached = earliest, None  # a fresh covered range from the limit on
                    cut[symbol].append((lo, hi, cached))
            return cut
        limit = INTRADAY_LIMITS[job.spec.name]
        shown = ", ".join(beyond[:12]) + (f" and {len(beyond) - 12} more" if len(beyond) > 12 else "")
        raise DataError(
            f"yfinance serves {job.spec.name} bars only for the last {limit.lookback_days} days (from {earliest}); "
            f"{start}..{end} is beyond that and not cached for {shown}: start on or after {earliest}, or use "
            f"Alpaca's data (--data alpaca in backtests.run, --source alpaca in marketdata fetch: years of intraday bars)")

    def _plan(self, job: _Job, gaps, report: FetchReport) -> dict[tuple[dt.date, dt.date], list[str]]:
        """Ranges to download, each with the symbols that miss it, in the order they extend the cache.

        1m ranges are cut into chunks Yahoo serves in one request; a head gap's chunks run backwards from the
        cache, a tail gap's forwards, so each merged chunk touches the covered range and a failed chunk leaves no
        hole marked covered."""
        limit = INTRADAY_LIMITS.get(job.spec.name)
        step = limit.days_per_request if limit is not None else None
        plan: dict[tuple[dt.date, dt.date], list[str]] = {}
        for symbol, ranges in gaps.items():
            for lo, hi, cached in sorted(ranges, key=lambda r: (r[0], r[1])):
                chunks = [(lo, hi)]
                if step:
                    chunks = [(a, min(hi, a + dt.timedelta(days=step - 1)))
                              for a in (lo + dt.timedelta(days=k) for k in range(0, (hi - lo).days + 1, step))]
                    head = cached is not None and cached.covered is not None and hi < cached.covered[0]
                    if head:
                        chunks.reverse()
                if cached is None and job.intraday:
                    report.restart[symbol] = chunks[0]
                for chunk in chunks:
                    plan.setdefault(chunk, []).append(symbol)
        return plan

    def _fill(self, job: _Job, plan, report: FetchReport, progress) -> dict[str, str]:
        """Download every planned range in batches; returns symbol -> reason for ranges that stayed missing."""
        unfetched: dict[str, str] = {}
        refetch: dict[str, tuple[dt.date, dt.date]] = {}
        done_symbols: set[str] = set()
        offline = False
        planned = {s for syms in plan.values() for s in syms}
        last_chunk = {s: chunk for chunk, syms in plan.items() for s in syms}
        for (lo, hi), symbols in plan.items():
            for i in range(0, len(symbols), self.batch_size):
                batch = symbols[i:i + self.batch_size]
                if offline:  # one batch that reached nobody is enough: do not wait on every other batch
                    outcome = {s: ("network", None) for s in batch}
                else:
                    outcome = self._download_with_retry(job, batch, lo, hi, report)
                    offline = all(status == "network" for status, _ in outcome.values())
                for symbol in batch:
                    status, frame = outcome[symbol]
                    if status in ("ok", "empty"):
                        merged = self._merge(job, symbol, frame, lo, hi, report, check_overlap=not job.intraday)
                        if merged is not None:
                            refetch[symbol] = merged
                    else:
                        unfetched.setdefault(symbol, status)
                if progress is not None:
                    # A symbol counts as done after its last chunk (1m ranges take several requests).
                    finished = [s for s in batch if last_chunk[s] == (lo, hi) and s not in done_symbols]
                    if finished:
                        progress(len(finished))
                    done_symbols.update(finished)
        if progress is not None and len(done_symbols) < len(planned):
            progress(len(planned) - len(done_symbols))
        # A split or dividend moved the adjusted history: refetch each such symbol's whole range once.
        for symbol, (lo, hi) in sorted(refetch.items()):
            status, frame = self._download_with_retry(job, [symbol], lo, hi, report)[symbol]
            if status in ("ok", "empty"):
                self._merge(job, symbol, frame, lo, hi, report, check_overlap=False)
            else:
                unfetched.setdefault(symbol, status)
        return unfetched

    def _merge(self, job: _Job, symbol: str, frame: pd.DataFrame | None, lo: dt.date, hi: dt.date,
               report: FetchReport, *, check_overlap: bool) -> tuple[dt.date, dt.date] | None:
        """Write fetched bars over ``lo..hi`` into the cache; returns a range to refetch if adjustments moved."""
        fetched = frame if frame is not None else _empty_bars(job.spec.name)
        day_after = pd.Timestamp(hi + _ONE_DAY)
        fetched = fetched[(fetched.index >= pd.Timestamp(lo)) & (fetched.index < day_after)]
        cache = job.cache
        cached = cache.read(symbol)
        # The bar of the current session may still change: it is stored, but its date is not marked covered.
        complete_hi = min(hi, self.today() - _ONE_DAY)
        if cached is not None and cached.covered is not None:
            old = cached.bars
            if check_overlap:
                # Only bars of finished sessions are compared: a stored intraday bar is expected to differ.
                both = old.index.intersection(fetched.index)
                both = both[(both >= pd.Timestamp(cached.covered[0])) & (both <= pd.Timestamp(cached.covered[1]))]
                if len(both) and not np.allclose(old.loc[both, "close"], fetched.loc[both, "close"], rtol=1e-5):
                    return min(cached.covered[0], lo), max(cached.covered[1], hi)
            keep = old[(old.index < pd.Timestamp(lo)) | (old.index >= day_after)]
            bars = pd.concat([keep, fetched]).sort_index() if len(keep) else fetched
            if report.restart.get(symbol) == (lo, hi):
                covered = (lo, complete_hi) if complete_hi >= lo else None
            elif not check_overlap and job.intraday:
                touches = lo <= cached.covered[1] + _ONE_DAY and hi >= cached.covered[0] - _ONE_DAY
                # A chunk that does not touch the covered range (an earlier chunk failed) is stored, not covered.
                covered = (min(cached.covered[0], lo), max(cached.covered[1], complete_hi)) if touches \
                    else cached.covered
            elif check_overlap:
                covered = (min(cached.covered[0], lo), max(cached.covered[1], complete_hi))
            else:
                covered = (lo, complete_hi)
        else:
            bars = fetched if cached is None else pd.concat(
                [cached.bars[(cached.bars.index < pd.Timestamp(lo)) | (cached.bars.index >= day_after)],
                 fetched]).sort_index()
            covered = (lo, complete_hi) if complete_hi >= lo else None
        fetched_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        source = INTRADAY_SOURCE.format(interval=job.spec.name) if job.intraday else SOURCE
        extra = {"source": source, "yahoo_symbol": yahoo_symbol(symbol), "auto_adjust": self.adjusted}
        if job.intraday:
            extra["session"] = "extended" if job.extended else "regular"
        try:
            cache.write(symbol, bars, covered=covered, fetched_at=fetched_at, extra=extra)
        except OSError as exc:
            # A read-only cache still lets this run use what it downloaded.
            report.cache_write_errors[symbol] = f"{exc.strerror or exc}"
            previous = report.unsaved.get(symbol)
            if previous is not None:
                bars = pd.concat([previous[0][~previous[0].index.isin(bars.index)], bars]).sort_index()
            report.unsaved[symbol] = (bars, fetched_at)
            return None
        if symbol not in report.downloaded:
            report.downloaded.append(symbol)
        return None

    def _read_window(self, job: _Job, symbol: str, report: FetchReport, unfetched: str | None,
                     cached=None) -> None:
        if symbol in report.unsaved:
            bars, fetched_at = report.unsaved[symbol]
            columns = BarColumns.from_frame(bars)
        else:
            try:
                if cached is None or cached is _UNREAD:
                    cached = job.cache.read(symbol)
            except CacheCorruptError as exc:
                report.failed[symbol], report.details[symbol] = "corrupt", str(exc)
                return
            columns, fetched_at = (cached.columns, cached.fetched_at) if cached is not None else \
                (BarColumns.from_frame(_empty_bars(job.spec.name)), None)
        window = columns.window(pd.Timestamp(report.start), pd.Timestamp(report.end + _ONE_DAY))
        if not len(window):
            if unfetched is not None:
                report.failed[symbol] = unfetched
            else:
                report.failed[symbol] = "no_bars"
            return
        if unfetched is not None:
            report.incomplete[symbol] = f"served from cache; part of the window not fetched: {unfetched}"
        report.windows[symbol] = window
        if fetched_at:
            report.fetched_at[symbol] = fetched_at

    # ----------------------------------------------------------------------------------------------------------

    def _download_with_retry(self, job: _Job, symbols: list[str], lo: dt.date, hi: dt.date,
                             report: FetchReport) -> dict[str, tuple[str, pd.DataFrame | None]]:
        from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

        results: dict[str, tuple[str, pd.DataFrame | None]] = {}
        pending = list(symbols)

        def attempt() -> list[str]:
            outcome = self._download_once(job, pending, lo, hi, report)
            report.downloads += 1
            results.update(outcome)
            transient = [s for s in pending if outcome[s][0] in TRANSIENT]
            answered = any(outcome[s][0] not in TRANSIENT for s in pending)
            if transient and not answered and all(outcome[s][0] == "network" for s in transient):
                return []  # nothing reached Yahoo: offline, so waiting and retrying would only delay the answer
            pending[:] = transient
            return transient

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=wait_exponential_jitter(initial=self.retry.first_wait, max=self.retry.max_wait,
                                         jitter=self.retry.first_wait),
            retry=retry_if_result(bool),
            retry_error_callback=lambda state: state.outcome.result(),
            before_sleep=lambda state: log.info("yfinance: retrying %d symbol(s) after attempt %d",
                                                len(pending), state.attempt_number),
            **({"sleep": self._sleep} if self._sleep is not None else {}),
        )
        retrying(attempt)
        return results

    def _download_once(self, job: _Job, symbols: list[str], lo: dt.date, hi: dt.date,
                       report: FetchReport | None = None) -> dict[str, tuple[str, pd.DataFrame | None]]:
        """One ``yf.download`` call; classifies each symbol as ok, empty, unknown, rate_limited, server, network,
        refused."""
        import yfinance as yf
        from yfinance.data import YfData

        by_yahoo = {yahoo_symbol(s): s for s in symbols}
        with _YF_LOCK, _quiet_yfinance() as messages, warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="yfinance")
            self._prepare_yfinance()
            session = self._session
            session.outcomes.clear()
            # yfinance memoises past-range responses in-process; a retry must reach Yahoo again.
            clear = getattr(YfData.cache_get, "cache_clear", None)
            if clear is not None:
                clear()
            try:
                frame = yf.download(
                    list(by_yahoo), start=lo.isoformat(), end=(hi + _ONE_DAY).isoformat(), interval=job.spec.name,
                    auto_adjust=self.adjusted, actions=False, threads=self.threads, progress=False,
                    group_by="column", session=session, timeout=self.timeout, ignore_tz=True, repair=False,
                    keepna=False, multi_level_index=True, prepost=job.extended,
                )
            except Exception as exc:  # yfinance's own failures (not per symbol): one readable line
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise DataError(f"yfinance download of {len(by_yahoo)} symbol(s) {lo}..{hi} failed: {reason}") from None
            outcomes = {k: list(v) for k, v in session.outcomes.items()}
        for message in messages:
            log.debug("yfinance: %s", message)
        result: dict[str, tuple[str, pd.DataFrame | None]] = {}
        for ysym, symbol in by_yahoo.items():
            bars = _bars_of(frame, ysym, job.spec)
            if bars is not None and job.intraday:
                bars = keep_session(bars, extended=job.extended)  # New York sessions, not Yahoo's word for them
            notes = outcomes.get(ysym, [])
            status = _classify(notes, got_rows=bars is not None and not bars.empty)
            if status == "refused" and report is not None:
                said = next((m for m in messages if ysym in m), notes[-1])
                report.details[symbol] = said.split(": ", 1)[-1].strip()[:240]
            result[symbol] = (status, bars if status in ("ok", "empty") else None)
        return result

    def _prepare_yfinance(self) -> None:
        if self._session is None:
            import yfinance as yf

            # Keep yfinance's own small caches (time zones, cookie) beside ours: one folder to set, to clear,
            # and to make writable (e.g. /tmp in Lambda).
            yf.set_tz_cache_location(str(self.cache.root / "yfinance"))
            self._session = _ObservedSession()


class _quiet_yfinance:
    """Collect yfinance's log lines instead of printing them: failures are reported by the provider, by name."""

    def __enter__(self) -> list[str]:
        self.logger = logging.getLogger("yfinance")
        self.messages: list[str] = []
        self.handler = _ListHandler(self.messages)
        self.propagate = self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        return self.messages

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self.propagate


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def _bars_of(frame: pd.DataFrame | None, ysym: str, spec: Interval | None = None) -> pd.DataFrame | None:
    if frame is None or frame.empty or not isinstance(frame.columns, pd.MultiIndex):
        return None
    if ysym not in frame.columns.get_level_values("Ticker"):
        return None
    bars = frame.xs(ysym, axis=1, level="Ticker").rename(columns=_COLUMNS)
    bars = bars[[c for c in _COLUMNS.values() if c in bars.columns]].dropna(subset=["close"])
    if spec is not None and spec.intraday:
        # ignore_tz=True leaves the exchange's wall clock: bar starts in New York time, as marketdata.bars wants.
        bars.index = pd.DatetimeIndex(bars.index)
        bars.index.name = "timestamp"
    else:
        bars.index = pd.DatetimeIndex(bars.index).normalize()
        bars.index.name = "date"
    return bars.astype("float64")



_UNREAD = object()  # _read_window: the file must be read (a fetched symbol, or none read before)


def wide_frame(windows: dict[str, BarColumns], order: list[str], column: str,
               like: pd.DataFrame | None = None) -> pd.DataFrame:
    """One column of every window side by side (rows: the union of their dates, or ``like``'s rows), as
    ``pd.DataFrame({s: windows[s].frame()[column] for s in order})`` builds it, from one numpy block when all the
    windows share their dates (the usual case: 500 series aligned at once, not one by one).

    >>> from marketdata.cache import BarColumns
    >>> a = BarColumns.from_frame(pd.DataFrame({"close": [1.0, 2.0]}, index=pd.to_datetime(["2022-01-03", "2022-01-04"])))
    >>> b = BarColumns.from_frame(pd.DataFrame({"close": [5.0]}, index=pd.to_datetime(["2022-01-04"])))
    >>> wide_frame({"A": a, "B": a}, ["A", "B"], "close").to_numpy().tolist()
    [[1.0, 1.0], [2.0, 2.0]]
    >>> wide_frame({"A": a, "B": b}, ["A", "B"], "close").to_numpy().tolist()
    [[1.0, nan], [2.0, 5.0]]
    """
    first = windows[order[0]].index if order else np.array([], dtype="datetime64[ns]")
    target = pd.DatetimeIndex(like.index) if like is not None else None
    aligned = all(windows[s].index is first or np.array_equal(windows[s].index, first) for s in order)
    if aligned and (target is None or (len(target) == len(first) and np.array_equal(target.to_numpy(), first))):
        block = np.empty((len(first), len(order)), dtype="float64")
        for j, s in enumerate(order):
            values = windows[s].column(column)
            block[:, j] = values if values is not None else np.nan
        index = target if target is not None else pd.DatetimeIndex(first.copy())
        return pd.DataFrame(block, index=index, columns=pd.Index(order))
    series = {}
    for s in order:
        w = windows[s]
        values = w.column(column)
        series[s] = pd.Series(values.astype("float64") if values is not None else np.nan,
                              index=pd.DatetimeIndex(w.index), dtype="float64")
    frame = pd.DataFrame(series, columns=pd.Index(order))
    return frame.reindex(target) if target is not None else frame


def _yfinance_version() -> str:
    # The installed distribution's version (yfinance sets __version__ from the same number): importing yfinance
    # only to read it cost a cold Lambda cycle 0.3 s.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("yfinance")
    except PackageNotFoundError:
        return "unknown"


def _widened(gap: tuple[dt.date, dt.date], cached) -> tuple[dt.date, dt.date]:
    """Stretch a gap by one cached bar on the side that touches the cache, to detect re-adjusted history."""
    lo, hi = gap
    if cached is None or cached.covered is None or not len(cached.columns):
        return gap
    dates = pd.DatetimeIndex(cached.columns.index)
    dates = dates[(dates >= pd.Timestamp(cached.covered[0])) & (dates <= pd.Timestamp(cached.covered[1]))]
    if not len(dates):
        return gap
    if lo > cached.covered[1]:  # a tail gap: start from the last complete cached bar
        lo = min(lo, dates.max().date())
    elif hi < cached.covered[0]:  # a head gap: end at the first cached bar
        hi = max(hi, dates.min().date())
    return lo, hi
