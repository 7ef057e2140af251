"""Bars from Alpaca's market data API (alpaca-py's ``StockHistoricalDataClient``), through the on-disk cache.

:class:`AlpacaDataProvider` implements :class:`marketdata.provider.PriceProvider` for daily and intraday bars
(``1m 5m 15m 1h 1d``). For each symbol it asks the cache which calendar ranges are missing, downloads only those
(symbols sharing a range in one ``StockBarsRequest``; alpaca-py follows ``next_page_token``), keeps regular-hours
bars (unless ``extended``), and writes the result back atomically, one file per symbol. Keys are the trading
keys (``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``).

* **Feed**: IEX by default (the free plan); ``feed="sip"`` (``APCA_DATA_FEED=sip``) when the account allows it.
  Feed and adjustment are part of the cache folder, so IEX and SIP bars never mix.
* **Adjustment**: ``all`` by default (splits, dividends, spin-offs), recorded in the provenance; ``raw`` etc.
  as Alpaca's ``adjustment`` parameter allows.
* **Hour bars**: Alpaca's ``1Hour`` bars start on the clock hour, so a 09:00 bar would mix the pre-market into
  the first half hour. Regular-hours ``1h`` bars are therefore built from ``30Min`` bars, anchored at the open
  (09:30, 10:30, ... as Yahoo's); with ``extended=True`` Alpaca's clock-hour bars are kept as they are.
* **Rate limits**: alpaca-py's own retry ignores ``Retry-After`` and sleeps a fixed 3 s; here every page request
  goes through a urllib3 ``Retry`` that honours ``Retry-After`` (capped by :class:`RetryPolicy`), so pagination
  resumes at the page that was refused. Retries exhausted: the symbols are named, the cache keeps what it had.
* **Interrupted fetch** (connection lost mid-pagination): the batch's symbols are named as not fetched; nothing of
  theirs is written, earlier batches are kept.

Example (offline, so it runs anywhere):
    >>> import tempfile, datetime as dt
    >>> provider = AlpacaDataProvider(AlpacaDataConfig("key", "secret"), cache_dir=tempfile.mkdtemp(), offline=True)
    >>> provider.fetch(["AAPL"], dt.date(2024, 7, 1), dt.date(2024, 7, 2), interval="15m").failed
    {'AAPL': 'offline'}
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

import pandas as pd

from marketdata.bars import Interval, keep_session, parse_interval, session_resample
from marketdata.cache import CacheCorruptError, PriceCache, cache_kind, missing_ranges
from marketdata.errors import DataError
from marketdata.fetching import as_date as _as_date, empty_bars as _empty_bars, last_bars, start_for_bars
from marketdata.fetching import unique_symbols as _unique_symbols
from marketdata.prices import PriceData

log = logging.getLogger(__name__)

SOURCE = "Alpaca market data API v2 (alpaca-py StockHistoricalDataClient)"
OFFLINE_ENV_VAR = "PROPHETTREND_OFFLINE"
_NEW_YORK = ZoneInfo("America/New_York")
_ONE_DAY = dt.timedelta(days=1)
FEEDS = ("iex", "sip")
ADJUSTMENTS = ("raw", "split", "dividend", "all")
REASONS = {
    "no_bars": "no bars in the window (unknown to Alpaca, not listed yet, or delisted)",
    "rate_limited": "Alpaca rate limit, HTTP 429, still refused after retries",
    "server": "Alpaca server error, still failing after retries",
    "network": "not fetched: Alpaca could not be reached or the connection was lost",
    "offline": "not cached, and offline mode is on",
    "corrupt": "cache file unreadable",
    "refused": "refused by Alpaca",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per page request on 429 and 5xx; waits follow ``Retry-After`` (else exponential), at most
    ``max_wait`` seconds each."""

    attempts: int = 5
    first_wait: float = 1.0
    max_wait: float = 60.0


@dataclass(frozen=True)
class AlpacaDataConfig:
    """Keys, base URL (``None``: Alpaca's ``https://data.alpaca.markets``), feed and adjustment."""

    key_id: str
    secret: str = field(repr=False)
    url: str | None = None
    feed: str = "iex"
    adjustment: str = "all"

    def __post_init__(self) -> None:
        if self.feed not in FEEDS:
            raise DataError(f"unknown Alpaca data feed {self.feed!r}: use iex (free) or sip (paid subscription)")
        if self.adjustment not in ADJUSTMENTS:
            raise DataError(f"unknown Alpaca adjustment {self.adjustment!r}: use {', '.join(ADJUSTMENTS)}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AlpacaDataConfig":
        """``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY`` (the trading keys), ``APCA_API_DATA_URL`` (optional base
        URL), ``APCA_DATA_FEED`` (``iex`` or ``sip``), ``APCA_DATA_ADJUSTMENT`` (default ``all``).

        >>> AlpacaDataConfig.from_env({})
        Traceback (most recent call last):
        ...
        marketdata.errors.DataError: Alpaca market data needs APCA_API_KEY_ID and APCA_API_SECRET_KEY (the trading keys)
        """
        env = os.environ if env is None else env
        key, secret = env.get("APCA_API_KEY_ID", "").strip(), env.get("APCA_API_SECRET_KEY", "").strip()
        if not key or not secret:
            raise DataError("Alpaca market data needs APCA_API_KEY_ID and APCA_API_SECRET_KEY (the trading keys)")
        return cls(key, secret, url=env.get("APCA_API_DATA_URL", "").strip() or None,
                   feed=env.get("APCA_DATA_FEED", "iex").strip().lower() or "iex",
                   adjustment=env.get("APCA_DATA_ADJUSTMENT", "all").strip().lower() or "all")


@dataclass
class AlpacaFetchReport:
    """What one :meth:`AlpacaDataProvider.fetch` did, per symbol."""

    start: dt.date
    end: dt.date
    interval: str
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    fetched_at: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> a key of REASONS
    incomplete: dict[str, str] = field(default_factory=dict)
    downloaded: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    requests: int = 0  # StockBarsRequest calls (each may span several pages)
    retries: int = 0  # page requests repeated after a 429 or 5xx
    cache_write_errors: dict[str, str] = field(default_factory=dict)

    def failure_summary(self) -> str:
        """One line naming every failed symbol by reason, and how many loaded."""
        by_reason: dict[str, list[str]] = defaultdict(list)
        for symbol, reason in sorted(self.failed.items()):
            by_reason[reason].append(symbol)
        parts = []
        for reason, symbols in by_reason.items():
            shown = ", ".join(symbols[:12]) + (f" and {len(symbols) - 12} more" if len(symbols) > 12 else "")
            why = REASONS.get(reason, reason)
            if reason in ("refused", "corrupt"):
                why = f"{why}: {self.details[symbols[0]]}"
            parts.append(f"{shown} ({why})")
        text = "; ".join(parts) if parts else "nothing failed"
        loaded = f"{len(self.frames)} other symbol(s) loaded" if self.frames else "nothing else loaded"
        return f"{text}; {loaded}"


def _timeframe(interval: Interval, extended: bool):
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    if interval.name == "1d":
        return TimeFrame(1, TimeFrameUnit.Day)
    if interval.name == "1h":
        return TimeFrame(1, TimeFrameUnit.Hour) if extended else TimeFrame(30, TimeFrameUnit.Minute)
    return TimeFrame(interval.minutes, TimeFrameUnit.Minute)


def _retry_class(policy: RetryPolicy, sleep: Callable[[float], None], counter: list[int]):
    """A urllib3 ``Retry`` that honours ``Retry-After`` with a cap and a replaceable sleep (tests do not wait)."""
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        def sleep(self, response=None) -> None:  # noqa: D102 - urllib3's hook between attempts
            wait = self.get_retry_after(response) if response is not None else None
            if wait is None:
                wait = policy.first_wait * 2 ** max(0, len(self.history) - 1)
            counter[0] += 1
            sleep(min(max(0.0, wait), policy.max_wait))

    return _Retry


def new_york_today() -> dt.date:
    return dt.datetime.now(_NEW_YORK).date()


class AlpacaDataProvider:
    """Daily and intraday bars from Alpaca, cached on disk; see the module docstring."""

    name = "alpaca"

    def __init__(self, config: AlpacaDataConfig | None = None, *, cache_dir: str | Path | None = None,
                 batch_size: int = 100, retry: RetryPolicy = RetryPolicy(), offline: bool | None = None,
                 timeout: float = 30.0, today: Callable[[], dt.date] | None = None,
                 now: Callable[[], dt.datetime] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.config = config if config is not None else AlpacaDataConfig.from_env()
        self.cache_root = cache_dir
        self.batch_size = batch_size
        self.retry = retry
        self.offline = offline if offline is not None else os.environ.get(OFFLINE_ENV_VAR, "") not in ("", "0")
        self.timeout = timeout
        self.now = now if now is not None else (lambda: dt.datetime.now(_NEW_YORK))
        self.today = today if today is not None else (lambda: self.now().astimezone(_NEW_YORK).date())
        import time

        self._sleep = sleep if sleep is not None else time.sleep
        self._retries = [0]
        self._client = None

    def cache(self, interval: str = "1d", extended: bool = False) -> PriceCache:
        """The cache folder for this feed, adjustment, bar size and session choice."""
        interval = parse_interval(interval).name
        kind = cache_kind("alpaca", interval, self.config.adjustment, feed=self.config.feed, extended=extended)
        return PriceCache(self.cache_root, adjusted=self.config.adjustment != "raw", interval=interval, kind=kind)

    # ----------------------------------------------------------------------------------------------------------
    # PriceProvider

    def history(self, symbols: Sequence[str], end: dt.date | dt.datetime, bars: int | None = None,
                start: dt.date | None = None, strict: bool = True, interval: str = "1d",
                extended: bool = False) -> PriceData:
        """Bars up to ``end``: a date includes that whole day; a datetime (intraday) only the bars complete by
        then. The last ``bars`` rows, or from ``start``."""
        spec = parse_interval(interval)
        end_day = end.date() if isinstance(end, dt.datetime) else end
        if start is None:
            if bars is None:
                raise DataError("alpaca history needs bars= or start=")
            start = start_for_bars(end_day, bars, spec, extended)
        data = self.load(symbols, start, end_day, strict=strict, interval=spec.name, extended=extended)
        return last_bars(data, spec, end, bars, "alpaca")

    def load(self, symbols: Sequence[str], start: dt.date, end: dt.date, *, strict: bool = True,
             interval: str = "1d", extended: bool = False, progress: Callable[[int], None] | None = None,
             extra: dict | None = None) -> PriceData:
        """Fetch what is missing and return the window as :class:`PriceData` (``strict``: any failure raises)."""
        report = self.fetch(symbols, start, end, interval=interval, extended=extended, progress=progress)
        if report.failed and (strict or not report.frames):
            raise DataError(f"alpaca {report.interval} {start}..{end}: {report.failure_summary()}")
        return self.to_price_data(report, extended=extended, extra=extra)

    def to_price_data(self, report: AlpacaFetchReport, *, extended: bool = False,
                      extra: dict | None = None) -> PriceData:
        if not report.frames:
            raise DataError(f"no prices from alpaca between {report.start} and {report.end}")
        order = list(report.frames)
        columns = {name: pd.DataFrame({s: report.frames[s][name] for s in order}) for name in ("open", "high", "low", "close")}
        closes = columns["close"]
        closes.index = pd.DatetimeIndex(closes.index).as_unit("ns")
        missing: dict[str, list[str]] = defaultdict(list)
        for symbol, reason in sorted(report.failed.items()):
            missing[reason].append(symbol)
        import alpaca

        provenance = {
            "provider": self.name, "feed": self.config.feed, "adjustment": self.config.adjustment,
            "session": "extended (04:00-20:00 New York)" if extended else "regular (XNYS sessions)",
            "alpaca_py_version": getattr(alpaca, "__version__", "unknown"),
            "cache_dir": str(self.cache(report.interval, extended).root),
            "window": [report.start.isoformat(), report.end.isoformat()],
            "symbols_missing": dict(missing), "symbols_incomplete": dict(sorted(report.incomplete.items())),
            "fetched_at_oldest": min(report.fetched_at.values()) if report.fetched_at else None, **(extra or {}),
        }
        return PriceData.from_closes(
            closes, opens=columns["open"].reindex(closes.index), highs=columns["high"].reindex(closes.index),
            lows=columns["low"].reindex(closes.index), source=SOURCE, adjusted=self.config.adjustment != "raw",
            fetched_at=max(report.fetched_at.values()) if report.fetched_at else None, origin="alpaca",
            extra=provenance, interval=report.interval)

    def fetch(self, symbols: Iterable[str], start: dt.date, end: dt.date, *, interval: str = "1d",
              extended: bool = False, progress: Callable[[int], None] | None = None) -> AlpacaFetchReport:
        """Fill the cache for ``symbols`` over ``start..end`` (only missing ranges) and read the window back."""
        spec = parse_interval(interval)
        start, end = _as_date(start), _as_date(end)
        if start > end:
            raise DataError(f"empty date range: start {start} is after end {end}")
        wanted = _unique_symbols(symbols)
        cache = self.cache(spec.name, extended)
        report = AlpacaFetchReport(start=start, end=end, interval=spec.name)
        plan: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
        for symbol in wanted:
            try:
                cached = cache.read(symbol)
            except CacheCorruptError as exc:
                report.failed[symbol], report.details[symbol] = "corrupt", str(exc)
                continue
            for gap in missing_ranges(cached, start, end):
                plan[gap].append(symbol)
        planned = {s for syms in plan.values() for s in syms}
        if progress is not None and len(wanted) > len(planned):
            progress(len(wanted) - len(planned))
        unfetched: dict[str, str] = {}
        if plan and self.offline:
            unfetched = dict.fromkeys(planned, "offline")
            if progress is not None:
                progress(len(planned))
        elif plan:
            unfetched = self._fill(plan, cache, spec, extended, report, progress)
        for symbol in wanted:
            if symbol not in report.failed:
                self._read_window(cache, symbol, report, unfetched.get(symbol))
        return report

    # ----------------------------------------------------------------------------------------------------------

    def _fill(self, plan, cache: PriceCache, spec: Interval, extended: bool, report: AlpacaFetchReport,
              progress) -> dict[str, str]:
        unfetched: dict[str, str] = {}
        done: set[str] = set()
        unreachable = False
        for (lo, hi), symbols in sorted(plan.items()):
            for i in range(0, len(symbols), self.batch_size):
                batch = symbols[i:i + self.batch_size]
                if unreachable:  # one batch that reached nobody is enough: do not wait on every other one
                    status, frames = "network", {}
                else:
                    status, frames = self._download(batch, lo, hi, spec, extended, report)
                    unreachable = status == "network"
                for symbol in batch:
                    if status == "ok":
                        self._merge(cache, symbol, frames.get(symbol), lo, hi, report)
                    else:
                        unfetched.setdefault(symbol, status)
                if progress is not None:
                    progress(len([s for s in batch if s not in done]))
                done.update(batch)
        return unfetched

    def _client_for(self):
        if self._client is None:
            from alpaca.data.historical import StockHistoricalDataClient

            client = StockHistoricalDataClient(self.config.key_id, self.config.secret, raw_data=True,
                                               url_override=self.config.url)
            # alpaca-py's own loop retries 429 after a fixed 3 s, ignoring Retry-After: turn it off (one attempt
            # per page) and let urllib3 retry each page request, honouring Retry-After.
            client._retry = 0
            retry = _retry_class(self.retry, self._sleep, self._retries)(
                total=self.retry.attempts - 1, connect=0, read=0, other=0, status=self.retry.attempts - 1,
                status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                respect_retry_after_header=True, raise_on_status=False)
            adapter = _TimeoutAdapter(self.timeout, max_retries=retry)
            client._session.mount("http://", adapter)
            client._session.mount("https://", adapter)
            self._client = client
        return self._client

    def _download(self, batch: list[str], lo: dt.date, hi: dt.date, spec: Interval, extended: bool,
                  report: AlpacaFetchReport) -> tuple[str, dict[str, pd.DataFrame]]:
        """One ``StockBarsRequest`` (all pages) for ``batch``; returns a status and the bars per symbol."""
        import requests
        from alpaca.common.exceptions import APIError
        from alpaca.data.requests import StockBarsRequest

        start = dt.datetime.combine(lo, dt.time(0, 0), tzinfo=_NEW_YORK)
        end = min(dt.datetime.combine(hi, dt.time(23, 59, 59), tzinfo=_NEW_YORK), self.now().astimezone(_NEW_YORK))
        if end < start:
            return "ok", {}
        request = StockBarsRequest(symbol_or_symbols=batch, timeframe=_timeframe(spec, extended), start=start,
                                   end=end, feed=self.config.feed, adjustment=self.config.adjustment)
        before = self._retries[0]
        try:
            raw = self._client_for().get_stock_bars(request)
        except APIError as exc:
            status = exc.status_code or 0
            message = _api_message(exc)
            if status == 401 or status == 403 and "subscription" not in message:
                raise DataError(f"Alpaca refused the keys (HTTP {status}: {message}); check APCA_API_KEY_ID and "
                                f"APCA_API_SECRET_KEY") from None
            reason = "rate_limited" if status == 429 else "server" if status >= 500 else "refused"
            for symbol in batch:
                report.details[symbol] = f"HTTP {status}: {message}"
            return reason, {}
        except (requests.ConnectionError, requests.Timeout) as exc:
            for symbol in batch:
                report.details[symbol] = f"{type(exc).__name__}"
            return "network", {}
        finally:
            report.requests += 1
            report.retries += self._retries[0] - before
        frames = {}
        for symbol, rows in (raw or {}).items():
            frames[symbol.upper()] = _frame(rows, spec, extended)
        return "ok", frames

    def _merge(self, cache: PriceCache, symbol: str, frame: pd.DataFrame | None, lo: dt.date, hi: dt.date,
               report: AlpacaFetchReport) -> None:
        fetched = frame if frame is not None else _empty_bars(cache.interval)
        day_after = pd.Timestamp(hi + _ONE_DAY)
        fetched = fetched[(fetched.index >= pd.Timestamp(lo)) & (fetched.index < day_after)]
        cached = cache.read(symbol)
        # Today's session may not be over: its bars are stored but its date is not marked covered.
        complete_hi = min(hi, self.today() - _ONE_DAY)
        if cached is not None and cached.covered is not None:
            old = cached.bars
            keep = old[(old.index < pd.Timestamp(lo)) | (old.index >= day_after)]
            bars = pd.concat([keep, fetched]).sort_index() if len(keep) else fetched
            covered = (min(cached.covered[0], lo), max(cached.covered[1], complete_hi))
        else:
            bars = fetched
            covered = (lo, complete_hi) if complete_hi >= lo else None
        fetched_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            cache.write(symbol, bars, covered=covered, fetched_at=fetched_at,
                        extra={"source": SOURCE, "feed": self.config.feed, "adjustment": self.config.adjustment})
        except OSError as exc:
            report.cache_write_errors[symbol] = f"{exc.strerror or exc}"
            report.frames[symbol] = bars
            return
        report.downloaded.append(symbol)

    def _read_window(self, cache: PriceCache, symbol: str, report: AlpacaFetchReport, unfetched: str | None) -> None:
        if symbol in report.cache_write_errors:
            bars, fetched_at = report.frames.pop(symbol), None
        else:
            try:
                cached = cache.read(symbol)
            except CacheCorruptError as exc:
                report.failed[symbol], report.details[symbol] = "corrupt", str(exc)
                return
            bars, fetched_at = (cached.bars, cached.fetched_at) if cached else (_empty_bars(cache.interval), None)
        window = bars[(bars.index >= pd.Timestamp(report.start)) & (bars.index < pd.Timestamp(report.end + _ONE_DAY))]
        window = window[window["close"].notna() & (window["close"] > 0)]
        if window.empty:
            report.failed[symbol] = unfetched or "no_bars"
            return
        if unfetched is not None:
            report.incomplete[symbol] = f"served from cache; part of the window not fetched: {REASONS[unfetched]}"
        report.frames[symbol] = window
        if fetched_at:
            report.fetched_at[symbol] = fetched_at


class _TimeoutAdapter:
    """``requests.adapters.HTTPAdapter`` with a default timeout (alpaca-py sets none)."""

    def __new__(cls, timeout: float, **kwargs):
        from requests.adapters import HTTPAdapter

        class Adapter(HTTPAdapter):
            def send(self, request, **kw):  # noqa: D102
                if kw.get("timeout") is None:
                    kw["timeout"] = timeout
                return super().send(request, **kw)

        return Adapter(**kwargs)


def _api_message(exc) -> str:
    try:
        return str(exc.message)
    except Exception:
        text = str(exc).strip()
        return text.splitlines()[0][:200] if text else type(exc).__name__


def _frame(rows: list[dict], spec: Interval, extended: bool) -> pd.DataFrame:
    """Alpaca's raw bars (``t o h l c v n vw``) as a frame indexed by New York bar start (dates for daily)."""
    if not rows:
        return _empty_bars(spec.name)
    frame = pd.DataFrame.from_records(rows)
    index = pd.to_datetime(frame["t"], utc=True).dt.tz_convert(_NEW_YORK).dt.tz_localize(None)
    out = pd.DataFrame({"open": frame["o"], "high": frame["h"], "low": frame["l"], "close": frame["c"],
                        "volume": frame["v"]}).astype("float64")
    for name, col in (("trade_count", "n"), ("vwap", "vw")):
        if col in frame:
            out[name] = frame[col].astype("float64")
    out.index = pd.DatetimeIndex(index.to_numpy())
    if spec.name == "1d":
        out.index = out.index.normalize()
        out.index.name = "date"
        return out
    out.index.name = "timestamp"
    out = keep_session(out, extended=extended)
    if spec.name == "1h" and not extended:
        out = session_resample(out.drop(columns=["vwap", "trade_count"], errors="ignore"), spec)
    return out.sort_index()
