"""A loopback stand-in for Alpaca's market data API v2 bars endpoint, for tests that drive alpaca-py's real
``StockHistoricalDataClient``.

**The bars are synthetic**: a deterministic random walk per symbol and day (seeded from the symbol and the date),
never real prices. Tests that use this stub are testing plumbing (pagination, retries, caching, session filtering),
not market behaviour.

It serves ``GET /v2/stocks/bars`` in Alpaca's shape, ``{"bars": {SYMBOL: [{"t", "o", "h", "l", "c", "v", "n",
"vw"}, ...]}, "next_page_token": ...}``, and is as strict as Alpaca:

* ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` are checked (401 otherwise);
* ``symbols`` and ``timeframe`` are required; ``timeframe`` is ``[1-59]Min|T``, ``[1-23]Hour|H`` or ``1Day|D``
  (anything else: 400 ``invalid timeframe``); ``limit`` 1..10000; ``sort`` asc|desc; ``feed`` iex|sip|
  delayed_sip|otc|boats; ``adjustment`` raw|split|dividend|spin-off|all (comma-combined); ``end`` before
  ``start``: 422;
* results are sorted by symbol, then time; ``limit`` counts bars across all symbols, and ``next_page_token``
  (opaque, base64) continues where the page stopped; a token that was not issued for this query is refused;
* bars only up to ``now`` (a bar is served once it is complete), 04:00-20:00 New York time for minute and hour
  bars (extended hours, as Alpaca), hour bars on the clock hour, day bars stamped at midnight New York time and
  aggregated from the regular session;
* ``feed=sip`` for the last 15 minutes needs ``sip_allowed`` (403 ``subscription does not permit querying recent
  SIP data``, as for the free plan); ``feed=otc`` is always refused (403);
* ``splits[symbol] = (date, ratio)``: raw prices before the date are ``ratio`` times the adjusted ones, so
  ``adjustment=raw`` and ``split``/``all`` differ;
* faults: ``rate_limit = n`` answers the next n bars requests 429 with ``Retry-After: retry_after``;
  ``drop_after = k`` drops the connection (no answer) on every bars request after the first k;
  ``page_size = n`` serves at most n bars per page (Alpaca may return fewer than ``limit``: pagination tests).

``requests`` records each bars query (a dict of its parameters).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

ET = ZoneInfo("America/New_York")
_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_FEEDS = {"iex", "sip", "delayed_sip", "otc", "boats"}
_ADJUSTMENTS = {"raw", "split", "dividend", "spin-off", "all"}


@dataclass
class DataStubState:
    key_id: str
    secret: str
    now: dt.datetime = field(default_factory=lambda: dt.datetime(2024, 7, 3, 16, 0, tzinfo=ET))
    symbols: set[str] = field(default_factory=lambda: {"AAPL", "MSFT", "KO", "SPY", "BRK.B"})
    splits: dict[str, tuple[str, float]] = field(default_factory=dict)
    sip_allowed: bool = False
    rate_limit: int = 0
    retry_after: int = 1
    drop_after: int | None = None
    page_size: int | None = None  # serve at most this many bars per page (Alpaca may return fewer than limit)
    requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def bars_requests(self) -> list[dict[str, str]]:
        with self.lock:
            return list(self.requests)


@lru_cache(maxsize=1)
def _sessions() -> pd.DataFrame:
    import exchange_calendars as xc

    sched = xc.get_calendar("XNYS", start="2015-01-01", end="2030-12-31").schedule
    return pd.DataFrame({"open": sched["open"].dt.tz_convert(ET), "close": sched["close"].dt.tz_convert(ET)},
                        index=sched.index)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "little")


@lru_cache(maxsize=4096)
def minute_bars(symbol: str, day: dt.date) -> pd.DataFrame:
    """The synthetic (split-adjusted) 1-minute bars of ``symbol`` on session ``day``, 04:00 to 20:00 New York time
    (17:00 after an early close); empty on other days. Indexed by aware New York bar start times."""
    sessions = _sessions()
    label = pd.Timestamp(day)
    if label not in sessions.index:
        return pd.DataFrame(columns=["o", "h", "l", "c", "v", "n", "vw"])
    close = sessions.at[label, "close"]
    start = pd.Timestamp(dt.datetime.combine(day, dt.time(4, 0)), tz=ET)
    end = pd.Timestamp(dt.datetime.combine(day, dt.time(17 if close.hour < 16 else 20, 0)), tz=ET)
    stamps = pd.date_range(start, end, freq="1min", inclusive="left")
    rng = np.random.default_rng(_seed(symbol, day.isoformat()))
    n_day = (day - dt.date(2015, 1, 1)).days
    base = 20 + _seed(symbol) % 300
    level = np.log(base) + 0.0002 * n_day + 0.08 * np.sin(n_day / 45 + _seed(symbol) % 7)
    path = level + np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.0007, len(stamps)))])
    o, c = np.exp(path[:-1]), np.exp(path[1:])
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.0006, len(stamps)))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 0.0006, len(stamps)))
    regular = (stamps >= sessions.at[label, "open"]) & (stamps < close)
    v = np.where(regular, rng.integers(2_000, 20_000, len(stamps)), rng.integers(10, 400, len(stamps)))
    return pd.DataFrame({"o": o, "h": h, "l": lo, "c": c, "v": v.astype("int64"), "n": (v // 50 + 1).astype("int64"),
                         "vw": (o + c + h + lo) / 4}, index=stamps)


def _aggregate(bars: pd.DataFrame, key) -> pd.DataFrame:
    groups = bars.groupby(key)
    out = pd.DataFrame({"o": groups["o"].first(), "h": groups["h"].max(), "l": groups["l"].min(),
                        "c": groups["c"].last(), "v": groups["v"].sum(), "n": groups["n"].sum()})
    out["vw"] = (bars["vw"] * bars["v"]).groupby(key).sum() / out["v"]
    return out


def series(symbol: str, amount: int, unit: str, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp,
           feed: str, split_adjusted: bool, split: tuple[str, float] | None) -> pd.DataFrame:
    """Synthetic bars of one symbol over ``start..end`` (aware), complete by ``now``."""
    frames = []
    for label in _sessions().loc[start.tz_convert(ET).normalize().tz_localize(None):
                                 end.tz_convert(ET).normalize().tz_localize(None)].index:
        minutes = minute_bars(symbol, label.date())
        if unit == "Day":
            sess = _sessions().loc[label]
            regular = minutes[(minutes.index >= sess["open"]) & (minutes.index < sess["close"])]
            if regular.empty or sess["close"] > now:
                continue
            day = _aggregate(regular, np.zeros(len(regular), dtype=int))
            day.index = [pd.Timestamp(label.date(), tz=ET)]
            frames.append(day)
            continue
        size = pd.Timedelta(minutes=amount) if unit == "Min" else pd.Timedelta(hours=amount)
        if amount == 1 and unit == "Min":
            frame = minutes
        else:
            # Alpaca aligns multi-minute and hour bars on the clock (epoch multiples of the size)
            floor = minutes.index.tz_convert("UTC").floor(size).tz_convert(ET)
            frame = _aggregate(minutes, floor)
        frame = frame[frame.index + size <= now]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["o", "h", "l", "c", "v", "n", "vw"])
    out = pd.concat(frames)
    out = out[(out.index >= start) & (out.index <= end)].copy()
    if feed == "iex":  # IEX sees a few percent of the consolidated volume
        out["v"] = (out["v"] // 30).astype("int64")
        out["n"] = (out["n"] // 30 + 1).astype("int64")
    if split is not None and not split_adjusted:
        when, ratio = split
        before = out.index < pd.Timestamp(when, tz=ET)
        for col in ("o", "h", "l", "c", "vw"):
            out.loc[before, col] = out.loc[before, col] * ratio
        out.loc[before, "v"] = (out.loc[before, "v"] / ratio).round().astype("int64")
    return out


def _rfc3339(t: pd.Timestamp) -> str:
    return t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, what: str) -> pd.Timestamp:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return pd.Timestamp(text, tz="UTC")
    t = pd.Timestamp(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"invalid {what}")
    return t


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _query(state: DataStubState, q: dict[str, str]) -> dict[str, Any]:
    if not q.get("symbols"):
        raise _Refusal(400, "missing symbols")
    symbols = [s.strip().upper() for s in q["symbols"].split(",") if s.strip()]
    m = _TIMEFRAME.match(q.get("timeframe", ""))
    if not m:
        raise _Refusal(400, "invalid timeframe")
    amount, unit = int(m.group(1)), {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}.get(m.group(2), m.group(2))
    if (unit == "Min" and not 1 <= amount <= 59) or (unit == "Hour" and not 1 <= amount <= 23) \
            or (unit in ("Day", "Week") and amount != 1) or (unit == "Month" and amount not in (1, 2, 3, 4, 6, 12)):
        raise _Refusal(400, "invalid timeframe")
    if unit in ("Week", "Month"):
        raise _Refusal(501, "the test stub serves Min, Hour and Day bars only")
    limit = q.get("limit", "1000")
    if not limit.isdigit() or not 1 <= int(limit) <= 10000:
        raise _Refusal(400, "invalid limit: must be between 1 and 10000")
    sort = q.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise _Refusal(400, "invalid sort")
    feed = q.get("feed", "sip" if state.sip_allowed else "iex")
    if feed not in _FEEDS:
        raise _Refusal(400, f"invalid feed: {feed}")
    adjustment = q.get("adjustment", "raw")
    parts = adjustment.split(",")
    if not all(p in _ADJUSTMENTS for p in parts):
        raise _Refusal(400, f"invalid adjustment: {adjustment}")
    now = pd.Timestamp(state.now)
    try:
        start = _parse_time(q["start"], "start") if q.get("start") else now.normalize()
        end = _parse_time(q["end"], "end") if q.get("end") else now
    except ValueError as exc:
        raise _Refusal(400, str(exc)) from None
    if end < start:
        raise _Refusal(422, "end should not be before start")
    if feed == "otc":
        raise _Refusal(403, "subscription does not permit querying OTC data")
    if feed == "sip" and not state.sip_allowed and end > now - pd.Timedelta(minutes=15):
        raise _Refusal(403, "subscription does not permit querying recent SIP data")
    return {"symbols": symbols, "amount": amount, "unit": unit, "limit": int(limit), "sort": sort, "feed": feed,
            "split_adjusted": "split" in parts or "all" in parts, "start": start, "end": end, "now": now}


def bars_page(state: DataStubState, q: dict[str, str]) -> dict[str, Any]:
    spec = _query(state, q)
    rows: list[tuple[str, pd.Timestamp, dict]] = []
    for symbol in sorted(set(spec["symbols"])):
        if symbol not in state.symbols:
            continue  # Alpaca answers unknown symbols with no bars, not an error
        frame = series(symbol, spec["amount"], spec["unit"], spec["start"], spec["end"], spec["now"], spec["feed"],
                       spec["split_adjusted"], state.splits.get(symbol))
        if spec["sort"] == "desc":
            frame = frame.iloc[::-1]
        stamps = frame.index.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        prices = frame[["o", "h", "l", "c", "vw"]].astype(float).round(4).to_numpy().tolist()
        counts = frame[["v", "n"]].astype("int64").to_numpy().tolist()
        for t, (o, h, l, c, vw), (v, n) in zip(stamps, prices, counts):
            rows.append((symbol, t, {"t": t, "o": o, "h": h, "l": l, "c": c, "v": v, "n": n, "vw": vw}))
    # the page token names the query (minus the token itself) and the position reached
    fingerprint = hashlib.sha256(json.dumps({k: v for k, v in sorted(q.items()) if k not in ("page_token", "limit")}
                                            ).encode()).hexdigest()[:16]
    offset = 0
    if q.get("page_token"):
        try:
            fp, pos = base64.b64decode(q["page_token"]).decode().split("|")
            offset = int(pos)
        except Exception:
            raise _Refusal(400, "invalid page token") from None
        if fp != fingerprint or not 0 < offset <= len(rows):
            raise _Refusal(400, "invalid page token")
    size = min(spec["limit"], state.page_size or spec["limit"])
    page = rows[offset:offset + size]
    bars: dict[str, list] = {}
    for symbol, _, bar in page:
        bars.setdefault(symbol, []).append(bar)
    nxt = offset + len(page)
    token = base64.b64encode(f"{fingerprint}|{nxt}".encode()).decode() if nxt < len(rows) else None
    return {"bars": bars, "next_page_token": token, "currency": "USD"}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if (self.headers.get("APCA-API-KEY-ID") != state.key_id
                or self.headers.get("APCA-API-SECRET-KEY") != state.secret):
            return self._send(401, {"message": "unauthorized."})
        if parts.path != "/v2/stocks/bars":
            return self._send(404, {"message": "Not Found"})
        with state.lock:
            state.requests.append(q)
            served = len(state.requests)
            if state.rate_limit > 0:
                state.rate_limit -= 1
                return self._send(429, {"message": "too many requests."},
                                  {"Retry-After": str(state.retry_after), "X-RateLimit-Limit": "200",
                                   "X-RateLimit-Remaining": "0"})
            drop = state.drop_after is not None and served > state.drop_after
        if drop:  # the answer never comes back: the connection is cut
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        try:
            payload = bars_page(state, q)
        except _Refusal as exc:
            return self._send(exc.status, {"code": exc.status * 100000 + 10000, "message": exc.message})
        self._send(200, payload, {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "199"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: DataStubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class AlpacaDataStub:
    url: str
    key_id: str
    secret: str
    state: DataStubState

    def env(self) -> dict[str, str]:
        """The environment that makes ``AlpacaDataConfig.from_env()`` talk to this stub."""
        return {"APCA_API_KEY_ID": self.key_id, "APCA_API_SECRET_KEY": self.secret, "APCA_API_DATA_URL": self.url}


@contextlib.contextmanager
def alpaca_data_stub(key_id: str = "PKSTUBDATAKEY0000001") -> Iterator[AlpacaDataStub]:
    """Run the stub on 127.0.0.1 (random port) for the ``with`` block (synthetic bars, see the module docstring)."""
    state = DataStubState(key_id=key_id, secret="stub-data-secret-" + secrets.token_hex(8))
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield AlpacaDataStub(f"http://127.0.0.1:{server.server_address[1]}", key_id, state.secret, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
