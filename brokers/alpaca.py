"""Alpaca as a :class:`brokers.base.Broker`, through the official alpaca-py SDK (``TradingClient``).

Paper endpoint unless told otherwise. Orders are whole-share market orders, ``time_in_force=day``; a buy that
carries a stop-loss and/or take-profit price goes as one bracket order (``order_class=bracket``, both exits) or
``oto`` (one exit), with exits good till cancelled so they keep protecting the position after the first day, as
the backtest's bracket does. The ``client_order_id`` (at most 48 characters, Alpaca's limit) is passed through,
so Alpaca itself refuses a second order with the same id (HTTP 422), which surfaces as
:class:`~brokers.base.DuplicateOrderError` -- except when that 422 answers alpaca-py's own resend of this very
call's order (see :meth:`AlpacaBroker.submit`).

Every failure (HTTP error, network, unexpected answer) becomes a :class:`~brokers.base.BrokerError` with a
one-line message that never contains the secret key; Alpaca refusing one order (HTTP 403/422: not tradable,
halted, insufficient buying power or quantity, ...) is the narrower :class:`~brokers.base.OrderRefused`, carrying
Alpaca's own words, so a cycle can record it and go on. Times come back timezone-aware in America/New_York.

Example:
    >>> broker = AlpacaBroker.from_env({"APCA_API_KEY_ID": "PKEXAMPLE", "APCA_API_SECRET_KEY": "s3cret"})
    >>> broker.name, broker.paper
    ('alpaca-paper', True)
    >>> "s3cret" in repr(broker)
    False
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.common.enums import Sort
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetCalendarRequest, GetOrdersRequest, MarketOrderRequest, StopLossRequest, TakeProfitRequest,
)

from brokers.base import (
    Account, BrokerError, BrokerOrder, BrokerPosition, Clock, DuplicateOrderError, OrderRefused, OrderRequest,
    Session,
)
from strategies.execution import Costs

ET = ZoneInfo("America/New_York")
T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LIVE_HOST = "api.alpaca.markets"
_PAPER_HOST = "paper-api.alpaca.markets"
MAX_CLIENT_ORDER_ID = 48  # Alpaca refuses longer ids with HTTP 422
PAGE_SIZE = 500  # Alpaca's largest page of orders
# a 403 about the keys or the whole account, not about one order: the cycle must stop, not skip a symbol
_ACCOUNT_LEVEL = re.compile(r"forbidden|not authori[sz]ed|unauthori[sz]ed|account (is )?(blocked|restricted|"
                            r"suspended|disabled|not (active|allowed|authori[sz]ed))|trading_blocked|account_blocked",
                            re.IGNORECASE)


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """alpaca-py sends requests without a timeout; a hung socket would otherwise hold a Lambda until it is killed.

    It also notes, per thread, the status of every answer while :meth:`watch` is on, so ``submit`` can tell that
    alpaca-py resent an order by itself (its ``RESTClient`` retries 429 and 504 without telling the caller).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self._local = threading.local()

    def watch(self) -> list[tuple[str, str, int]]:
        """Start noting answers in this thread; returns the list that fills up: (method, path, status)."""
        self._local.seen = []
        return self._local.seen

    def unwatch(self) -> None:
        self._local.seen = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        response = super().send(request, **kwargs)
        seen = getattr(self._local, "seen", None)
        if seen is not None:
            seen.append((request.method or "", urlsplit(request.url or "").path, response.status_code))
        return response


def parse_flag(value: str, name: str) -> bool:
    """An environment flag: true/false, 1/0, yes/no, on/off (any case).

    >>> parse_flag("False", "APCA_PAPER"), parse_flag("1", "APCA_PAPER")
    (False, True)
    """
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BrokerError(f"{name} must be true or false, got {value!r}")


class AlpacaBroker:
    """Alpaca's trading API behind the :class:`brokers.base.Broker` interface.

    Args:
        key_id, secret_key: the API key pair (paper keys for the paper endpoint).
        paper: paper endpoint (default) or live money.
        url: base URL override (alpaca-py's ``url_override``, without ``/v2``), e.g. a test stub.
        timeout: seconds per HTTP request before giving up.
        bracket_time_in_force: ``gtc`` (default: the exits outlive the day) or ``day``.
        retry_wait: seconds alpaca-py waits before resending after HTTP 429/504 (its default, 3, when ``None``).
    """

    def __init__(self, key_id: str, secret_key: str, *, paper: bool = True, url: str | None = None,
                 timeout: float = 10.0, bracket_time_in_force: str = "gtc", retry_wait: float | None = None) -> None:
        if not key_id or not secret_key:
            raise BrokerError("Alpaca needs both an API key id and a secret key")
        if bracket_time_in_force not in ("gtc", "day"):
            raise BrokerError(f"bracket_time_in_force must be gtc or day, got {bracket_time_in_force!r}")
        self.paper = paper
        self.name = "alpaca-paper" if paper else "alpaca-live"
        self.url = url.rstrip("/") if url else None
        self._secret = secret_key
        self._bracket_tif = TimeInForce(bracket_time_in_force)
        self._client = TradingClient(api_key=key_id, secret_key=secret_key, paper=paper, url_override=self.url)
        base = self._client._base_url
        self._base_url = str(getattr(base, "value", base))  # BaseURL is a str Enum: str() gives its name
        if retry_wait is not None:
            self._client._retry_wait = retry_wait  # RESTClient's own setting; its constructor is not exposed
        self._adapter: _TimeoutAdapter | None = None
        session = getattr(self._client, "_session", None)
        if isinstance(session, requests.Session):
            self._adapter = _TimeoutAdapter(timeout)
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> "AlpacaBroker":
        """Build from ``APCA_API_KEY_ID``, ``APCA_API_SECRET_KEY``, ``APCA_PAPER`` (default true) and the optional
        ``APCA_API_BASE_URL``; refuses a base URL that contradicts ``APCA_PAPER``.

        >>> AlpacaBroker.from_env({"APCA_API_KEY_ID": "PK1"})
        Traceback (most recent call last):
        ...
        brokers.base.BrokerError: missing APCA_API_SECRET_KEY: set your Alpaca API key id and secret key
        """
        env = os.environ if environ is None else environ
        key = (env.get("APCA_API_KEY_ID") or "").strip()
        secret = (env.get("APCA_API_SECRET_KEY") or "").strip()
        missing = [n for n, v in (("APCA_API_KEY_ID", key), ("APCA_API_SECRET_KEY", secret)) if not v]
        if missing:
            raise BrokerError(f"missing {' and '.join(missing)}: set your Alpaca API key id and secret key")
        paper = parse_flag(env.get("APCA_PAPER") or "true", "APCA_PAPER")
        url = (env.get("APCA_API_BASE_URL") or "").strip() or None
        if url:
            url = re.sub(r"/v2/?$", "", url.rstrip("/"))  # alpaca-py adds /v2 itself
            host = urlsplit(url).hostname
            if host is None:
                raise BrokerError(f"APCA_API_BASE_URL is not a URL: {url!r}")
            if paper and host == _LIVE_HOST:
                raise BrokerError("APCA_API_BASE_URL points at the live endpoint but APCA_PAPER is true")
            if not paper and host == _PAPER_HOST:
                raise BrokerError("APCA_API_BASE_URL points at the paper endpoint but APCA_PAPER is false")
        return cls(key, secret, paper=paper, url=url, **kwargs)

    def __repr__(self) -> str:
        return f"AlpacaBroker(name={self.name!r}, url={self._base_url!r})"

    # ---- the Broker interface --------------------------------------------------------------------------
    def clock(self) -> Clock:
        def get() -> Clock:
            c = self._client.get_clock()
            return Clock(now=c.timestamp.astimezone(ET), is_open=bool(c.is_open),
                         next_open=c.next_open.astimezone(ET), next_close=c.next_close.astimezone(ET))
        return self._call("clock", get)

    def calendar(self, start: dt.date, end: dt.date) -> list[Session]:
        def get() -> list[Session]:
            days = self._client.get_calendar(GetCalendarRequest(start=start, end=end))
            # Alpaca gives wall-clock New York times without an offset
            return [Session(date=d.date, open=_session_time(d.date, d.open), close=_session_time(d.date, d.close))
                    for d in days]
        return self._call("calendar", get)

    def account(self) -> Account:
        def get() -> Account:
            a = self._client.get_account()
            return Account(cash=float(a.cash), buying_power=float(a.buying_power), equity=float(a.equity),
                           currency=a.currency or "USD", id=str(a.id) if a.id else None)
        return self._call("account", get)

    def positions(self) -> dict[str, BrokerPosition]:
        def get() -> dict[str, BrokerPosition]:
            return {p.symbol: BrokerPosition(
                symbol=p.symbol, qty=_whole(p.qty), avg_entry_price=float(p.avg_entry_price),
                market_value=None if p.market_value is None else float(p.market_value),
                qty_available=None if p.qty_available is None else _whole(p.qty_available))
                for p in self._client.get_all_positions()}
        return self._call("positions", get)

    def open_orders(self) -> list[BrokerOrder]:
        """Open orders, bracket exit legs listed on their own (``order_type`` limit or stop)."""
        def get() -> list[BrokerOrder]:
            flt = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=False)
            return [_order(o) for o in self._client.get_orders(flt)]
        return self._call("open orders", get)

    def orders_since(self, since: dt.datetime) -> list[BrokerOrder]:
        """Every order submitted after ``since`` (exclusive), whatever its status, oldest first, bracket and OTO
        exits nested as ``legs`` of their entry; all pages (Alpaca gives at most 500 orders per request)."""
        if since.tzinfo is None:
            raise BrokerError("orders_since needs a timezone-aware time")

        def get() -> list[BrokerOrder]:
            out: list[BrokerOrder] = []
            seen: set[str] = set()
            after = since
            while True:
                flt = GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=PAGE_SIZE,
                                       direction=Sort.ASC, nested=True)
                page = [_order(o) for o in self._client.get_orders(flt)]
                fresh = [o for o in page if o.id not in seen]
                out.extend(fresh)
                seen.update(o.id for o in fresh)
                if len(page) < PAGE_SIZE:
                    return out
                if not fresh or page[-1].submitted_at is None:
                    # a full page at one instant: paging by time cannot go on without losing orders
                    raise BrokerError(f"more than {PAGE_SIZE} orders share one submission time; cannot page on")
                # Alpaca's times have nanoseconds, alpaca-py keeps microseconds: the boundary page may repeat
                # an order, which ``seen`` drops, but never skips one
                after = page[-1].submitted_at
        return self._call("orders since", get)

    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Submit a market (or bracket/oto) order; :class:`DuplicateOrderError` if the id was used before,
        :class:`OrderRefused` if Alpaca refuses this order (HTTP 403/422, Alpaca's words as ``reason``).

        If the answer is lost (network error, HTTP 5xx) the order may still have been taken, so it is looked up
        by ``client_order_id`` once: found, it is returned; not found, the error is raised.

        alpaca-py resends a POST answered with 429 or 504 by itself. When Alpaca had taken the first attempt,
        the resend meets "client_order_id must be unique": the order is ours, placed by this very call. That
        case is told apart from a genuinely reused id by what this call saw on the wire: the duplicate answer
        counts as our own order only if an earlier attempt of this same submit was answered 429/5xx and the
        order found by the id has this request's symbol, side and quantity. A duplicate answer to the first
        attempt is always a :class:`DuplicateOrderError`. (The live cycle looks the id up before submitting
        and holds a per-strategy lease, so nobody else sends that id meanwhile.)
        """
        what = f"submit {request.side} {request.qty} {request.symbol}"
        try:
            qty = int(request.qty)
            whole = qty == request.qty and not isinstance(request.qty, bool)
        except (TypeError, ValueError, OverflowError):
            qty, whole = 0, False
        if not whole or qty <= 0:
            raise BrokerError(f"alpaca {what} refused: qty must be a positive whole number of shares")
        if request.side not in ("buy", "sell"):
            raise BrokerError(f"alpaca {what} refused: side must be buy or sell")
        cid = request.client_order_id
        if not cid or len(cid) > MAX_CLIENT_ORDER_ID:
            raise OrderRefused(f"alpaca {what} refused: client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} "
                               f"characters, got {len(cid or '')}")
        order = self._market_order(request, qty)
        attempts = self._adapter.watch() if self._adapter else []
        try:
            placed = self._client.submit_order(order)
            return _order(placed)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a BrokerError below
            error = self._translate(what, exc, order_level=True)
            if isinstance(error, DuplicateOrderError) and _resent_after_failure(attempts):
                found = self._lookup_quietly(cid)
                if found is not None and (found.symbol, found.side, found.qty) == (request.symbol, request.side, qty):
                    return found
            if _answer_lost(exc):
                found = self._lookup_quietly(cid)
                if found is not None:
                    return found
            raise error from None
        finally:
            if self._adapter:
                self._adapter.unwatch()

    def cancel(self, order_id: str) -> None:
        """Ask Alpaca to cancel; the order may stay ``pending_cancel`` (still open) for a while afterwards.

        Cancelling an order already ``pending_cancel`` or ``canceled`` is done, not an error (one exit of a
        bracket cancels its sibling, so a second cancel finds it going already)."""
        try:
            self._call(f"cancel {order_id}", lambda: self._client.cancel_order_by_id(order_id))
        except BrokerError:
            try:
                status = self._client.get_order_by_id(order_id).status.value
            except Exception:  # noqa: BLE001 - the cancel's own error is the one to report
                status = None
            if status in ("pending_cancel", "canceled"):
                return
            raise

    def _lookup_quietly(self, client_order_id: str) -> BrokerOrder | None:
        try:
            return self.order_by_client_id(client_order_id)
        except BrokerError:
            return None

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        def get() -> BrokerOrder | None:
            try:
                return _order(self._client.get_order_by_client_id(client_order_id))
            except APIError as exc:
                if exc.status_code == 404:
                    return None
                raise
        return self._call(f"order {client_order_id}", get)

    # ---- helpers -----------------------------------------------------------------------------------------
    def _market_order(self, r: OrderRequest, qty: int) -> MarketOrderRequest:
        fields: dict[str, Any] = dict(symbol=r.symbol, qty=qty, side=OrderSide(r.side),
                                      time_in_force=TimeInForce.DAY, client_order_id=r.client_order_id)
        # exits only make sense on an entry; a sell with exits would open a short bracket
        if r.side == "buy" and (r.take_profit_price is not None or r.stop_loss_price is not None):
            if r.take_profit_price is not None:
                fields["take_profit"] = TakeProfitRequest(limit_price=tick(r.take_profit_price))
            if r.stop_loss_price is not None:
                fields["stop_loss"] = StopLossRequest(stop_price=tick(r.stop_loss_price))
            both = r.take_profit_price is not None and r.stop_loss_price is not None
            fields["order_class"] = OrderClass.BRACKET if both else OrderClass.OTO
            fields["time_in_force"] = self._bracket_tif
        return MarketOrderRequest(**fields)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a BrokerError
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: Exception, *, order_level: bool = False) -> BrokerError:
        """The one-line error for ``exc``; with ``order_level`` a 403/422 about this order is :class:`OrderRefused`."""
        if isinstance(exc, BrokerError):
            return exc
        if isinstance(exc, APIError):
            status = exc.status_code
            detail = _api_detail(exc)
            if status == 422 and "client_order_id" in detail.lower() and "unique" in detail.lower():
                return DuplicateOrderError(self._clean(f"alpaca {what}: client_order_id already used ({detail})"))
            message = self._clean(f"alpaca {what} failed: HTTP {status}: {detail}")
            if order_level and (status == 422 or (status == 403 and not _ACCOUNT_LEVEL.search(detail))):
                err = OrderRefused(self._clean(detail), status)
                err.args = (message,)  # str(err) keeps the context; err.reason is Alpaca's own words
                return err
            return BrokerError(message)
        if isinstance(exc, requests.RequestException):
            host = urlsplit(self._base_url).netloc
            return BrokerError(self._clean(f"alpaca {what} failed: {type(exc).__name__} talking to {host}"))
        return BrokerError(self._clean(f"alpaca {what} failed: unexpected answer ({type(exc).__name__}: {exc})"))

    def _clean(self, message: str) -> str:
        """One line, bounded, and never the secret (an error body or a proxy page could echo it)."""
        line = " ".join(message.replace(self._secret, "***").split())
        return line if len(line) <= 300 else line[:297] + "..."


def tick(price: float) -> float:
    """Round to Alpaca's price increment: cents from $1 up, 1/100 cent below (sub-penny orders are refused).

    >>> tick(101.23456), tick(0.123456)
    (101.23, 0.1235)
    """
    return round(float(price), 2 if price >= 1 else 4)


def _resent_after_failure(attempts: list[tuple[str, str, int]]) -> bool:
    """Whether alpaca-py resent this submit: an earlier POST of it was answered 429 or 5xx."""
    posts = [status for method, path, status in attempts if method == "POST" and path.endswith("/orders")]
    return len(posts) >= 2 and any(s == 429 or s >= 500 for s in posts[:-1])


def _answer_lost(exc: Exception) -> bool:
    if isinstance(exc, requests.RequestException):
        return True
    return isinstance(exc, APIError) and (exc.status_code or 0) >= 500


def _api_detail(exc: APIError) -> str:
    """Alpaca's ``message`` when the body is its JSON error, else the start of whatever came back."""
    text = str(exc)
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    text = re.sub(r"<[^>]+>", " ", text)  # an HTML error page from a proxy
    return " ".join(text.split())[:160] or "(empty answer)"


def _session_time(day: dt.date, t: dt.datetime | str) -> dt.datetime:
    """A calendar open/close in New York time: alpaca-py 0.4x parses "09:30" into a naive datetime, newer
    releases keep the string.

    >>> _session_time(dt.date(2022, 11, 25), "13:00").isoformat()
    '2022-11-25T13:00:00-05:00'
    """
    if isinstance(t, str):
        t = dt.datetime.combine(day, dt.time.fromisoformat(t))
    return t.replace(tzinfo=ET) if t.tzinfo is None else t.astimezone(ET)


def _whole(x: Any) -> int:
    """Whole shares; a fractional holding rounds toward zero so a sell never exceeds what is held."""
    return 0 if x is None else int(float(x))


# Alpaca charges no commission on US equities; it passes the SEC fee and the FINRA TAF on for sells.
ALPACA_COSTS = Costs(commission=0.0, slippage_bps=0.0, regulatory="alpaca")


def estimated_fee(side: str, qty: int, price: float | None, when: dt.datetime | None) -> float | None:
    """What Alpaca charges for a fill: its order objects carry no fee (the fees are booked later as account
    activities), so this is the costs model's estimate, marked ``fee_estimated`` on the order (docs/execution.md).

    >>> estimated_fee("sell", 100, 100.0, dt.datetime(2022, 6, 1, 19, 45, tzinfo=dt.timezone.utc))
    0.25
    >>> estimated_fee("buy", 100, 100.0, None), estimated_fee("sell", 0, None, None)
    (0.0, None)
    """
    if not qty or price is None:
        return None
    day = when.astimezone(ET).date() if when is not None else dt.datetime.now(ET).date()
    return ALPACA_COSTS.fees(side, qty, price, day)


def _order(o: Any) -> BrokerOrder:
    """alpaca-py's ``Order`` as a :class:`BrokerOrder`, nested exit legs included."""
    kind = o.type or o.order_type
    filled = _whole(o.filled_qty)
    price = float(o.filled_avg_price) if o.filled_avg_price not in (None, "") and filled else None
    side = o.side.value if o.side is not None else ""
    fee = estimated_fee(side, filled, price, getattr(o, "filled_at", None) or o.submitted_at)
    return BrokerOrder(
        id=str(o.id), client_order_id=o.client_order_id, symbol=o.symbol or "",
        side=o.side.value if o.side is not None else "", qty=_whole(o.qty), status=o.status.value,
        submitted_at=o.submitted_at.astimezone(ET) if o.submitted_at else None, filled_qty=filled,
        # Alpaca may say 0 before anything filled
        filled_avg_price=float(o.filled_avg_price) if o.filled_avg_price not in (None, "") and filled else None,
        order_type=kind.value if kind is not None else "market",
        legs=tuple(_order(leg) for leg in (o.legs or ())),
        fee=fee, fee_estimated=fee is not None,
    )
