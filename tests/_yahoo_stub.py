"""A stand-in for Yahoo Finance under the real yfinance and curl_cffi code: no network.

``YahooStub.install(monkeypatch)`` replaces ``curl_cffi.requests.Session.request`` (the transport every
yfinance request goes through) with a function that answers like Yahoo: the cookie and crumb endpoints, and
``/v8/finance/chart/{symbol}`` in Yahoo's chart JSON shape, built from the bundled sample's real closes
(20 S&P 500 stocks to 2022-12-28). Unknown symbols get Yahoo's 404 body. Switches simulate the failures:
``offline`` (every request raises curl_cffi's ConnectionError), ``rate_limit[symbol] = n`` (the next n chart
requests for that symbol get HTTP 429), ``server_error``. ``history_requests`` counts the ranged chart requests
per symbol, so a test can tell a cache hit from a download.
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
        self._lock = threading.Lock()

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
        if self.server_error:
            return _response(url, 500, "<html>Will be right back</html>", "text/html")
        column = symbol.replace("-", ".")
        if column not in self.closes.columns:
            return _response(url, 404, json.dumps(NOT_FOUND))
        series = self.closes[column].dropna() * self.scale.get(symbol, 1.0)
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
