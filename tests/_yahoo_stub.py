"""A stand-in for Yahoo Finance under the real yfinance and curl_cffi code: no network.

``YahooStub.install(monkeypatch)`` replaces ``curl_cffi.requests.Session.request`` (the transport every
yfinance request goes through) with a function that answers like Yahoo: the cookie and crumb endpoints, and
``/v8/finance/chart/{symbol}`` in Yahoo's chart JSON shape, built from the bundled sample's real closes
(20 S&P 500 stocks to 2022-12-28). Unknown symbols get Yahoo's 404 body. Switches simulate the failures:
``offline`` (every request raises curl_cffi's ConnectionError), ``rate_limit[symbol] = n`` (the next n chart
requests for that symbol get HTTP 429), ``server_error``. ``history_requests`` counts the ranged chart requests
per symbol, so a test can tell a cache hit from a download.

**Intraday** (``interval`` 1m, 2m, 5m, 15m, 30m, 60m/1h, 90m): answered in the same v8 chart shape as Yahoo's
intraday answers: bar-start ``timestamp`` seconds, ``meta.gmtoffset`` of the period asked for (EST -18000 or
EDT -14400), ``dataGranularity`` (the interval), ``range``, ``tradingPeriods`` (a list of regular sessions, or
``pre``/``regular``/``post`` when ``includePrePost`` is true) and no ``adjclose`` (Yahoo does not
dividend-adjust intraday bars). **The intraday bars are synthetic**: Yahoo's intraday history cannot be
recorded for the sample's years (it keeps 30 to 730 days), so each session's bars are a deterministic path from
the previous close to the sample's real close of that day, on the XNYS sessions (holidays and early closes from
``exchange_calendars``). Never present them as real prices.

Yahoo's intraday limits are enforced as Yahoo does, relative to the stub's ``now`` (default: the evening of the
sample's last day, 2022-12-28): 1m within the last 30 days and at most 8 days per request, 2m/5m/15m/30m/90m
within 60 days, 1h within 730 days; beyond them the answer is HTTP 422 with Yahoo's message ("1m data not
available for startTime=... and endTime=.... The requested range must be within the last 30 days."). Like
Yahoo on early-close days (yfinance's ``fix_Yahoo_returning_prepost_unrequested`` exists for this), regular-hours
answers then carry post-market bars up to 16:00 that ``tradingPeriods`` does not cover. ``stray_bars`` adds
further bars at given New York times (a simulated stray print, not a recorded Yahoo answer) to show what the
provider's own session filter catches. ``refuse_status[symbol] = (status, n)``: the next n chart requests of
that symbol get that HTTP status with Yahoo's error body (e.g. 422).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from curl_cffi import requests as curl_requests
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.models import Response

from marketdata import load_sample

NEW_YORK = "America/New_York"
INTRADAY_MINUTES = {"1m": 1, "2m": 2, "5m": 5, "15m": 15, "30m": 30, "60m": 60, "1h": 60, "90m": 90}
LOOKBACK_DAYS = {"1m": 30, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "90m": 60, "60m": 730, "1h": 730}
MAX_DAYS_PER_REQUEST = {"1m": 8}

NOT_FOUND = {"chart": {"result": None, "error": {"code": "Not Found",
                                                 "description": "No data found, symbol may be delisted"}}}


def _response(url: str, status: int, body: bytes | str, content_type: str = "application/json") -> Response:
    response = Response()
    response.url = url
    response.status_code = status
    response.ok = 200 <= status < 400
    response.reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "")
    response.content = body.encode() if isinstance(body, str) else body
    response.headers["Content-Type"] = content_type
    return response


class YahooStub:
    def __init__(self, closes: pd.DataFrame | None = None) -> None:
        self.closes = closes if closes is not None else load_sample().closes
        self.offline = False
        self.server_error = False
        self.rate_limit: Counter[str] = Counter()
        self.history_requests: Counter[str] = Counter()
        self.ranges: list[tuple[str, str, str]] = []  # (symbol, first date, last date) asked for
        self.all_requests = 0
        self.scale: dict[str, float] = {}  # multiply a symbol's prices (simulates a new dividend adjustment)
        self.now = pd.Timestamp("2022-12-28 19:00", tz=NEW_YORK)  # Yahoo's intraday limits count back from here
        self.stray_bars: list[pd.Timestamp] = []  # naive New York bar starts added to intraday answers
        self.refuse_status: dict[str, tuple[int, int]] = {}
        self.intraday_requests: list[dict] = []  # (symbol, interval, period1, period2, prepost) of each ranged ask
        self._lock = threading.Lock()

    def _intraday(self, url: str, symbol: str, series: pd.Series, interval: str, params: dict) -> Response:
        return _intraday_answer(self, url, symbol, series, interval, params)

    def install(self, monkeypatch) -> "YahooStub":
        stub = self

        def request(session, method, url, params=None, **kwargs):
            return stub.answer(method, url, params or {})

        monkeypatch.setattr(curl_requests.Session, "request", request)
        return self

    # ------------------------------------------------------------------------------------------------------

    def answer(self, method: str, url: str, params: dict) -> Response:
        with self._lock:
            self.all_requests += 1
        if self.offline:
            raise CurlConnectionError(f"Failed to perform, curl: (6) Could not resolve host: {urlparse(url).hostname}")
        path = urlparse(url).path
        if "/finance/chart/" in path:
            return self._chart(url, unquote(path.split("/finance/chart/", 1)[1]).upper(), params)
        if path.endswith("/getcrumb"):
            return _response(url, 200, "stubcrumb", "text/plain")
        if "fc.yahoo.com" in url:
            return _response(url, 404, "", "text/html")
        return _response(url, 404, json.dumps({"finance": {"result": None, "error": {"code": "Not Found"}}}))

    def _chart(self, url: str, symbol: str, params: dict) -> Response:
        ranged = "period1" in params
        with self._lock:
            if ranged:
                self.history_requests[symbol] += 1
            if self.rate_limit[symbol] > 0:
                self.rate_limit[symbol] -= 1
                return _response(url, 429, "Too Many Requests", "text/plain")
            status, times = self.refuse_status.get(symbol, (0, 0))
            if times > 0:
                self.refuse_status[symbol] = (status, times - 1)
                return _response(url, status, json.dumps(_error("Unprocessable Entity", "Invalid input")))
        if self.server_error:
            return _response(url, 500, "<html>Will be right back</html>", "text/html")
        column = symbol.replace("-", ".")
        if column not in self.closes.columns:
            return _response(url, 404, json.dumps(NOT_FOUND))
        series = self.closes[column].dropna() * self.scale.get(symbol, 1.0)
        interval = str(params.get("interval", "1d")).lower()
        if interval in INTRADAY_MINUTES:
            return self._intraday(url, symbol, series, interval, params)
        if ranged:
            # Yahoo's daily bars are stamped at the 09:30 New York open; period2 is exclusive.
            stamps = (series.index.tz_localize("America/New_York") + pd.Timedelta(hours=9, minutes=30))
            seconds = stamps.as_unit("s").asi8
            keep = (seconds >= int(params["period1"])) & (seconds < int(params["period2"]))
            series, seconds = series[keep], seconds[keep]
            if len(series):
                with self._lock:
                    self.ranges.append((symbol, str(series.index[0].date()), str(series.index[-1].date())))
        else:  # range=1d: yfinance only wants the metadata (time zone)
            series = series.iloc[-1:]
            stamps = series.index.tz_localize("America/New_York") + pd.Timedelta(hours=9, minutes=30)
            seconds = stamps.as_unit("s").asi8
        return _response(url, 200, json.dumps(_chart_json(symbol, series, seconds)))


def _chart_json(symbol: str, closes: pd.Series, seconds: np.ndarray) -> dict:
    close = [round(float(c), 6) for c in closes]
    meta = {
        "currency": "USD", "symbol": symbol, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY", "firstTradeDate": 345479400, "regularMarketTime": 1672261200,
        "hasPrePostMarketData": True, "gmtoffset": -18000, "timezone": "EST",
        "exchangeTimezoneName": "America/New_York", "regularMarketPrice": close[-1] if close else None,
        "priceHint": 2, "dataGranularity": "1d", "range": "",
        "currentTradingPeriod": {
            "pre": {"timezone": "EST", "start": 1672218000, "end": 1672237800, "gmtoffset": -18000},
            "regular": {"timezone": "EST", "start": 1672237800, "end": 1672261200, "gmtoffset": -18000},
            "post": {"timezone": "EST", "start": 1672261200, "end": 1672275600, "gmtoffset": -18000},
        },
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    result = {"meta": meta, "timestamp": [int(s) for s in seconds],
              "indicators": {"quote": [{"open": [round(c * 0.995, 6) for c in close],
                                        "high": [round(c * 1.01, 6) for c in close],
                                        "low": [round(c * 0.99, 6) for c in close],
                                        "close": close, "volume": [1_000_000] * len(close)}],
                             "adjclose": [{"adjclose": close}]}}
    if not close:
        result = {"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}
    return {"chart": {"result": [result], "error": None}}


def _error(code: str, description: str) -> dict:
    return {"chart": {"result": None, "error": {"code": code, "description": description}}}


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _sessions(first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """XNYS sessions whose day lies in first..last: open and close as aware New York timestamps."""
    import exchange_calendars

    cal = exchange_calendars.get_calendar("XNYS", start="1990-01-02")
    naive = [t.tz_localize(None) if t.tz is not None else t for t in (first, last)]
    lo, hi = max(naive[0].normalize(), cal.first_session), min(naive[1].normalize(), cal.last_session)
    if lo > hi:
        return pd.DataFrame({"open": [], "close": []})
    schedule = cal.schedule.loc[lo:hi]
    return pd.DataFrame({"open": schedule["open"].dt.tz_convert(NEW_YORK),
                         "close": schedule["close"].dt.tz_convert(NEW_YORK)}, index=schedule.index)


def _period(start: pd.Timestamp, end: pd.Timestamp) -> dict:
    zone = "EDT" if start.dst() else "EST"
    return {"timezone": zone, "start": int(start.timestamp()), "end": int(end.timestamp()),
            "gmtoffset": int(start.utcoffset().total_seconds())}


def synthetic_day(prev_close: float, close: float, opened: pd.Timestamp, closed: pd.Timestamp, minutes: int):
    """One session's synthetic bars (bar start, open, high, low, close, volume): a deterministic path from the
    previous close to the day's real close, so every interval of the same day ends on the same close."""
    length = (closed - opened).total_seconds() / 60.0

    def price(t):
        x = np.clip(np.asarray(t, dtype=float) / length, 0.0, 1.0)
        return prev_close + (close - prev_close) * x + 0.004 * close * np.sin(np.pi * x) * np.sin(5 * np.pi * x + 1)

    starts = np.arange(0, length, minutes, dtype=float)
    ends = np.minimum(starts + minutes, length)
    o, c, m = price(starts), price(ends), price((starts + ends) / 2)
    high = np.maximum.reduce([o, c, m]) * 1.0005
    low = np.minimum.reduce([o, c, m]) * 0.9995
    stamps = [opened + pd.Timedelta(minutes=float(t)) for t in starts]
    return stamps, o, high, low, c, (ends - starts) * 1000.0


def _intraday_frame(series: pd.Series, minutes: int, first: pd.Timestamp, last: pd.Timestamp,
                    prepost: bool, early_post: bool) -> pd.DataFrame:
    rows = []
    sessions = _sessions(first - pd.Timedelta(days=1), last + pd.Timedelta(days=1))
    for day, (opened, closed) in sessions.iterrows():
        if day not in series.index:
            continue
        before = series[series.index < day]
        prev = float(before.iloc[-1]) if len(before) else float(series[day])
        close = float(series[day])
        stamps, o, h, lo, c, v = synthetic_day(prev, close, opened, closed, minutes)
        rows += list(zip(stamps, o, h, lo, c, v))
        extra = []
        if prepost:
            extra += list(pd.date_range(opened.normalize() + pd.Timedelta(hours=4), opened, freq=f"{minutes}min",
                                        inclusive="left"))
        post_end = opened.normalize() + pd.Timedelta(hours=20 if prepost else 16)
        if prepost or (early_post and closed.hour < 16):
            extra += list(pd.date_range(closed, post_end, freq=f"{minutes}min", inclusive="left"))
        for stamp in extra:
            level = prev if stamp < opened else close
            rows.append((stamp, level, level * 1.0002, level * 0.9998, level, 100.0))
    frame = pd.DataFrame(rows, columns=["t", "open", "high", "low", "close", "volume"]).set_index("t")
    return frame.sort_index()


def _intraday_answer(stub: "YahooStub", url: str, symbol: str, series: pd.Series, interval: str,
                     params: dict) -> Response:
    minutes = INTRADAY_MINUTES[interval]
    prepost = _truthy(params.get("includePrePost", False))
    now = stub.now
    if "period1" in params:
        p1, p2 = int(params["period1"]), int(params["period2"])
        lookback = LOOKBACK_DAYS[interval]
        if p1 < int(now.timestamp()) - lookback * 86400:
            return _response(url, 422, json.dumps(_error("Unprocessable Entity", (
                f"{interval} data not available for startTime={p1} and endTime={p2}. "
                f"The requested range must be within the last {lookback} days."))))
        most = MAX_DAYS_PER_REQUEST.get(interval)
        if most is not None and p2 - p1 > most * 86400:
            return _response(url, 422, json.dumps(_error("Unprocessable Entity", (
                f"{interval} data not available for startTime={p1} and endTime={p2}. "
                f"Only {most} days worth of {interval} granularity data are allowed to be fetched per request."))))
        first = pd.Timestamp(p1, unit="s", tz="UTC").tz_convert(NEW_YORK)
        last = min(pd.Timestamp(p2, unit="s", tz="UTC").tz_convert(NEW_YORK), now)
        range_ = ""
        with stub._lock:
            stub.intraday_requests.append({"symbol": symbol, "interval": interval, "period1": p1, "period2": p2,
                                           "prepost": prepost})
    else:  # range=5d etc.: yfinance's metadata asks
        last, first, range_ = now, now - pd.Timedelta(days=7), str(params.get("range", ""))
    frame = _intraday_frame(series, minutes, first, last, prepost, early_post=True)
    for stamp in stub.stray_bars:
        aware = pd.Timestamp(stamp).tz_localize(NEW_YORK)
        level = float(series.iloc[-1])
        frame.loc[aware] = [level, level, level, level, 1.0]
    frame = frame.sort_index()
    frame = frame[(frame.index >= first) & (frame.index < last)]
    sessions = _sessions(first, last)
    sessions = sessions[(sessions["open"] < last) & (sessions["close"] > first)]  # the days asked for
    regular = [[_period(o, c)] for o, c in zip(sessions["open"], sessions["close"])]
    if prepost:
        periods = {"pre": [[_period(o.normalize() + pd.Timedelta(hours=4), o)] for o in sessions["open"]],
                   "regular": regular,
                   "post": [[_period(c, o.normalize() + pd.Timedelta(hours=20))]
                            for o, c in zip(sessions["open"], sessions["close"])]}
    else:
        periods = regular
    seconds = np.array([int(t.timestamp()) for t in frame.index], dtype=np.int64)
    offset = int((first if len(frame) == 0 else frame.index[0]).utcoffset().total_seconds())
    body = _chart_json(symbol, frame["close"], seconds)
    result = body["chart"]["result"][0]
    result["meta"].update(dataGranularity=interval, range=range_, gmtoffset=offset,
                          timezone="EDT" if offset == -14400 else "EST", tradingPeriods=periods,
                          validRanges=["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"])
    result["indicators"].pop("adjclose", None)  # Yahoo sends no adjclose for intraday bars
    if len(frame):
        result["indicators"]["quote"] = [{
            "open": [round(float(x), 6) for x in frame["open"]], "high": [round(float(x), 6) for x in frame["high"]],
            "low": [round(float(x), 6) for x in frame["low"]], "close": [round(float(x), 6) for x in frame["close"]],
            "volume": [int(x) for x in frame["volume"]]}]
    return _response(url, 200, json.dumps(body))
