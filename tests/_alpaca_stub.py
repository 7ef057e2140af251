"""A loopback stand-in for Alpaca's v2 trading REST API, for tests that drive the real alpaca-py client.

It speaks the JSON shapes alpaca-py's models parse (``alpaca/trading/models.py``) for exactly the endpoints the
brokers use: ``GET /v2/account``, ``/v2/clock``, ``/v2/calendar``, ``/v2/positions``, ``GET|POST /v2/orders``,
``GET /v2/orders:by_client_order_id``, ``GET|DELETE /v2/orders/{id}``. The market clock and calendar come from
the real NYSE calendar (exchange_calendars), so holidays and early closes are right.

It is as strict as Alpaca where money is concerned (messages and codes as Alpaca sends them):

- headers ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` are checked (401 otherwise);
- a reused ``client_order_id`` gets 422 ``{"code": 40010001, "message": "client_order_id must be unique"}``, one
  over 48 characters 422 ``client_order_id must be no more than 48 characters``;
- **reserved shares**: a position's ``qty_available`` is its ``qty`` minus the shares held for open sell orders
  (a simple sell's unfilled quantity; a bracket or OTO entry's exit legs once the entry filled, counted once per
  entry, as take-profit and stop-loss hold the same shares); a sell beyond it gets 403 ``insufficient qty
  available for order (requested: X, available: Y)`` with Alpaca's ``held_for_orders``/``existing_qty`` fields;
- **buying power** is cash minus what open buys reserve (unfilled quantity times the current price, as Alpaca
  reserves a market buy), and a sale's proceeds count only once the sell fills; a buy beyond it gets 403
  ``insufficient buying power``;
- **cancels are not instant**: ``DELETE /v2/orders/{id}`` answers 204 and the order (with its bracket family)
  goes ``pending_cancel``; it stays open, still reserving shares and buying power, until ``cancel_delay`` more
  requests have been answered (default 1: the very next request still sees it), the clock is moved
  (:meth:`StubState.set_now`) or a test calls :meth:`StubState.settle_cancels`. Cancelling it again gets 422
  ``order pending cancel``; cancelling a closed order 422 ``order is already in "filled" state``;
- per-symbol refusals: ``unknown`` symbols get 422 ``asset "X" not found``, ``untradable`` ones 422 ``asset X is
  not tradable``, ``halted`` ones 403 ``trading is halted for X``;
- 404 for unknown orders.

A lost answer is a :class:`Fault`: ``fail("POST", "/v2/orders", status=504, commit=True)`` takes the order and
answers 504, which alpaca-py resends by itself (it retries 429 and 504); the resend then meets
``client_order_id must be unique``, as on Alpaca.

Everything lives in memory in :class:`StubState`; a test sets the clock, seeds positions and prices, injects
faults and reads what was received::

    with alpaca_stub() as stub:
        broker = AlpacaBroker(stub.key_id, stub.secret, url=stub.url)
        stub.state.set_now("2022-06-01T10:00:00-04:00")
        stub.state.prices["AAPL"] = 150.0
        stub.state.fill_market_orders = True          # market orders fill at once while the market is open
        stub.state.fail("POST", "/v2/orders", status=None, after=1, commit=True)   # 2nd submit: order kept, answer lost
        stub.state.halted.add("MSFT")                 # 403 for orders in MSFT
        ...
        stub.state.submitted()                        # JSON bodies of the POST /v2/orders received

Example:
    >>> import requests
    >>> with alpaca_stub() as stub:
    ...     r = requests.get(stub.url + "/v2/clock", headers=stub.headers(), timeout=5)
    ...     r.status_code, r.json()["is_open"]
    (200, True)
    >>> with alpaca_stub() as stub:
    ...     stub.state.set_position("AAPL", 10, 150.0)
    ...     order = {"symbol": "AAPL", "qty": "6", "side": "sell", "type": "market", "time_in_force": "day"}
    ...     first = requests.post(stub.url + "/v2/orders", json=order, headers=stub.headers(), timeout=5)
    ...     again = requests.post(stub.url + "/v2/orders", json=order, headers=stub.headers(), timeout=5)
    ...     pos = requests.get(stub.url + "/v2/positions", headers=stub.headers(), timeout=5).json()[0]
    ...     first.status_code, again.status_code, again.json()["message"], pos["qty_available"]
    (200, 403, 'insufficient qty available for order (requested: 6, available: 4)', '4')
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
UTC = dt.timezone.utc

# Alpaca's "open" query status covers these order states
OPEN = frozenset({"new", "partially_filled", "accepted", "pending_new", "held", "pending_cancel", "pending_replace",
                  "accepted_for_bidding", "calculated", "done_for_day"})
_TIME_IN_FORCE = {"day", "gtc", "opg", "cls", "ioc", "fok"}
MAX_CLIENT_ORDER_ID = 48  # Alpaca refuses longer client_order_ids with 422


@lru_cache(maxsize=1)
def _nyse_sessions() -> dict[dt.date, tuple[dt.datetime, dt.datetime]]:
    """date -> (open, close) in New York time, 2000..2030, from the real NYSE calendar."""
    import exchange_calendars as xc  # imported late: it takes about a second

    cal = xc.get_calendar("XNYS", start="2000-01-01", end="2030-12-31")
    sched = cal.schedule
    return {d.date(): (o.to_pydatetime().astimezone(ET), c.to_pydatetime().astimezone(ET))
            for d, o, c in zip(sched.index, sched["open"], sched["close"])}


def _utc_stamp(t: dt.datetime) -> str:
    """Alpaca's order timestamps: UTC, microseconds, ``Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _et_stamp(t: dt.datetime, nanos: bool = False) -> str:
    """Alpaca's clock timestamps: New York offset; ``timestamp`` carries nanoseconds."""
    t = t.astimezone(ET)
    frac = f".{t.microsecond:06d}000" if nanos else ""
    off = t.strftime("%z")
    return f"{t:%Y-%m-%dT%H:%M:%S}{frac}{off[:3]}:{off[3:]}"


def _num(x: float) -> str:
    """Alpaca sends money and quantities as decimal strings."""
    return f"{x:.10g}" if x != int(x) else str(int(x))


@dataclass
class Fault:
    """Make matching requests fail: after ``after`` have gone through, the next ``times`` fail.

    ``status=None`` drops the connection without an answer; ``status=200`` answers normally; ``delay`` seconds
    of silence come first (a slow or hung server); ``commit=True`` on ``POST /v2/orders`` keeps the order before failing, as when the broker took
    the order but the answer was lost on the way back.
    """

    method: str
    path: str
    status: int | None = 500
    after: int = 0
    times: int = 1
    commit: bool = False
    delay: float = 0.0
    body: dict | None = None
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and path.startswith(self.path)


@dataclass
class Received:
    """One request as the stub saw it (the secret header is never kept, only whether it matched)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorized: bool


@dataclass
class StubState:
    """The stub broker's whole world; every field may be read or set by a test (hold ``lock`` while mutating
    from another thread than the test's own)."""

    key_id: str
    secret: str
    now: dt.datetime = field(default_factory=lambda: dt.datetime(2022, 6, 1, 10, 0, tzinfo=ET))
    cash: float = 100_000.0
    prices: dict[str, float] = field(default_factory=dict)
    positions: dict[str, dict] = field(default_factory=dict)  # symbol -> {"qty": int, "avg_entry_price": float}
    orders: list[dict] = field(default_factory=list)  # Alpaca order JSON (legs listed too), oldest first
    fill_market_orders: bool = False
    account_id: str = "a3c6a5e6-5d6b-4f4c-9d6f-1f0c3d1e2b7a"  # another account: another id (the ledger binds to it)
    account_number: str = "PA3STUB00001"
    # 1: a cash account; 2 (or 4): a margin account whose buying power is that multiple of equity less what is held
    # long (Reg T's overnight 2x, simplified): cash may then go below zero, as Alpaca lets it.
    multiplier: float = 1.0
    received: list[Received] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # answered requests after a cancel before pending_cancel becomes canceled (None: only on a clock move)
    cancel_delay: int | None = 1
    unknown: set[str] = field(default_factory=set)  # 422 asset not found
    untradable: set[str] = field(default_factory=set)  # 422 asset not tradable
    halted: set[str] = field(default_factory=set)  # 403 trading halted
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _answered: int = 0
    _pending_cancels: list[tuple[int, dict]] = field(default_factory=list)  # (due after answer n, order)
    _last_stamp: dt.datetime | None = None

    # ---- set-up helpers -------------------------------------------------------------------------------
    def set_now(self, now: dt.datetime | str) -> None:
        """Set the market clock (aware datetime or ISO 8601 with offset)."""
        t = dt.datetime.fromisoformat(now) if isinstance(now, str) else now
        if t.tzinfo is None:
            raise ValueError("the stub clock needs a timezone-aware time")
        with self.lock:
            self.now = t.astimezone(ET)
            self.settle_cancels()  # time moved on: the broker has long since confirmed them

    def settle_cancels(self) -> list[dict]:
        """Confirm every ``pending_cancel``: those orders become ``canceled``; returns them."""
        with self.lock:
            done = [o for _, o in self._pending_cancels]
            self._pending_cancels.clear()
            for o in done:
                self._confirm_cancel(o)
            return done

    def _confirm_cancel(self, o: dict) -> None:
        if o["status"] == "pending_cancel":
            stamp = self._stamp()
            o.update(status="canceled", canceled_at=stamp, updated_at=stamp)

    def answered(self) -> None:
        """One more request answered: confirm the cancels that are due."""
        with self.lock:
            self._answered += 1
            due = [(n, o) for n, o in self._pending_cancels if n <= self._answered]
            for item in due:
                self._pending_cancels.remove(item)
                self._confirm_cancel(item[1])

    def set_position(self, symbol: str, qty: int, avg_entry_price: float, price: float | None = None) -> None:
        with self.lock:
            self.positions[symbol] = {"qty": qty, "avg_entry_price": float(avg_entry_price)}
            self.prices.setdefault(symbol, float(price if price is not None else avg_entry_price))
            if price is not None:
                self.prices[symbol] = float(price)

    def fail(self, method: str, path: str, status: int | None = 500, *, after: int = 0, times: int = 1,
             commit: bool = False, delay: float = 0.0, body: dict | None = None) -> Fault:
        """Inject a fault (see :class:`Fault`); returns it so a test can look at ``seen``."""
        f = Fault(method.upper(), path, status, after, times, commit, delay, body)
        with self.lock:
            self.faults.append(f)
        return f

    # ---- read helpers -----------------------------------------------------------------------------------
    def submitted(self) -> list[dict]:
        """JSON bodies of every ``POST /v2/orders`` received (accepted or not)."""
        with self.lock:
            return [r.body for r in self.received if r.method == "POST" and r.path == "/v2/orders"]

    def order(self, key: str) -> dict | None:
        """The stored order with this id or client_order_id."""
        with self.lock:
            return next((o for o in self.orders if key in (o["id"], o["client_order_id"])), None)

    def by_client_id(self, client_order_id: str) -> dict | None:
        with self.lock:
            return next((o for o in self.orders if o["client_order_id"] == client_order_id), None)

    def open_orders(self) -> list[dict]:
        with self.lock:
            return [o for o in self.orders if o["status"] in OPEN]

    def session(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        return _nyse_sessions().get(day)

    def is_open(self) -> bool:
        s = self.session(self.now.date())
        return s is not None and s[0] <= self.now < s[1]

    def qty_available(self, symbol: str) -> int:
        """The position's shares not held for open sell orders (Alpaca's ``qty_available``)."""
        with self.lock:
            held = self.positions.get(symbol, {}).get("qty", 0)
            return held - self.held_for_orders(symbol)

    def held_for_orders(self, symbol: str) -> int:
        """Shares reserved by open sells: a simple sell's unfilled quantity, a live exit family's once."""
        with self.lock:
            held = 0
            families: dict[str, int] = {}
            for o in self.orders:
                if o["symbol"] != symbol or o["side"] != "sell" or o["status"] not in OPEN:
                    continue
                left = int(float(o["qty"])) - int(float(o["filled_qty"]))
                parent = o.get("_parent_id")
                if parent is None:
                    held += left
                elif self.order(parent)["status"] == "filled":  # exits hold shares only once the entry is in
                    families[parent] = max(families.get(parent, 0), left)
            return held + sum(families.values())

    def reserved_for_buys(self) -> float:
        """Buying power held by open buys: unfilled quantity times the current price (a market buy's reserve)."""
        with self.lock:
            total = 0.0
            for o in self.orders:
                if o["side"] == "buy" and o["status"] in OPEN and o.get("_parent_id") is None:
                    left = float(o["qty"]) - float(o["filled_qty"])
                    total += left * self.prices.get(o["symbol"], 0.0)
            return total

    def buying_power(self) -> float:
        """Cash minus what open buys reserve; unfilled sells add nothing until they fill (a cash account)."""
        with self.lock:
            long_value = sum(p["qty"] * self.prices.get(s, p["avg_entry_price"]) for s, p in self.positions.items())
            margin = (self.multiplier - 1.0) * (self.cash + long_value)
            return max(0.0, self.cash + margin - self.reserved_for_buys())

    def fill(self, key: str, price: float | None = None) -> dict:
        """Fill an open order at ``price`` (default ``prices[symbol]``), moving cash and positions."""
        with self.lock:
            o = self.order(key)
            if o is None or o["status"] not in OPEN:
                raise ValueError(f"no open order {key!r}")
            px = float(price if price is not None else self.prices[o["symbol"]])
            self._fill(o, px)
            return o

    # ---- the broker's rules -------------------------------------------------------------------------------
    def _fill(self, o: dict, px: float) -> None:
        qty = int(float(o["qty"]))
        sym = o["symbol"]
        pos = self.positions.get(sym, {"qty": 0, "avg_entry_price": 0.0})
        if o["side"] == "buy":
            new_qty = pos["qty"] + qty
            pos["avg_entry_price"] = (pos["qty"] * pos["avg_entry_price"] + qty * px) / new_qty
            pos["qty"] = new_qty
            self.cash -= qty * px
        else:
            pos["qty"] -= qty
            self.cash += qty * px
        if pos["qty"] == 0:
            self.positions.pop(sym, None)
        else:
            self.positions[sym] = pos
        self.prices.setdefault(sym, px)
        stamp = self._stamp()
        o.update(status="filled", filled_qty=o["qty"], filled_avg_price=_num(px), filled_at=stamp, updated_at=stamp)
        for leg in self._legs(o):  # the exits go live once the entry is in: the limit works, the stop waits
            leg["status"] = "new" if leg["type"] == "limit" else "held"
        if o.get("_parent_id"):  # one exit filled: its sibling is cancelled (one-cancels-other)
            for sibling in self._legs(self.order(o["_parent_id"])):
                if sibling is not o and sibling["status"] in OPEN:
                    sibling.update(status="canceled", canceled_at=stamp, updated_at=stamp)

    def _stamp(self) -> str:
        """The broker's time of an event: the clock, never twice the same instant (Alpaca's are nanoseconds
        apart), so ``after``/``until`` paging sees a strict order."""
        t = self.now
        if self._last_stamp is not None and t <= self._last_stamp:
            t = self._last_stamp + dt.timedelta(microseconds=1)
        self._last_stamp = t
        return _utc_stamp(t)

    def _legs(self, o: dict) -> list[dict]:
        return [self.order(i) for i in o.get("_leg_ids", [])]

    def _position_json(self, sym: str, p: dict) -> dict:
        px = self.prices.get(sym, p["avg_entry_price"])
        qty, avg = p["qty"], p["avg_entry_price"]
        cost, value = qty * avg, qty * px
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-stub/{sym}")), "symbol": sym,
            "exchange": "NASDAQ", "asset_class": "us_equity", "asset_marginable": True,
            "avg_entry_price": _num(avg), "qty": str(qty), "side": "long" if qty > 0 else "short",
            "market_value": _num(value), "cost_basis": _num(cost), "unrealized_pl": _num(value - cost),
            "unrealized_plpc": _num((value - cost) / cost if cost else 0.0), "unrealized_intraday_pl": "0",
            "unrealized_intraday_plpc": "0", "current_price": _num(px), "lastday_price": _num(px),
            "change_today": "0", "qty_available": str(qty - self.held_for_orders(sym)),
        }

    def account_json(self) -> dict:
        long_value = sum(p["qty"] * self.prices.get(s, p["avg_entry_price"]) for s, p in self.positions.items())
        equity = self.cash + long_value
        bp = self.buying_power()
        return {
            "id": self.account_id, "account_number": self.account_number, "status": "ACTIVE",
            "crypto_status": "ACTIVE", "currency": "USD", "buying_power": _num(bp),
            "regt_buying_power": _num(bp), "daytrading_buying_power": "0",
            "non_marginable_buying_power": _num(min(bp, max(0.0, self.cash))), "cash": _num(self.cash), "accrued_fees": "0",
            "pending_transfer_in": "0", "portfolio_value": _num(equity), "pattern_day_trader": False,
            "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
            "created_at": "2021-01-04T14:30:00.000000Z", "trade_suspended_by_user": False, "multiplier": f"{self.multiplier:g}",
            "shorting_enabled": False, "equity": _num(equity), "last_equity": _num(equity),
            "long_market_value": _num(long_value), "short_market_value": "0", "initial_margin": "0",
            "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0,
            "options_buying_power": _num(bp), "options_approved_level": 0, "options_trading_level": 0,
        }

    def clock_json(self) -> dict:
        now, sessions = self.now, _nyse_sessions()
        day = now.date()
        opens = []
        for i in range(0, 15):
            s = sessions.get(day + dt.timedelta(days=i))
            if s:
                opens.append(s)
        next_open = next(o for o, c in opens if o > now)
        next_close = next(c for o, c in opens if c > now)
        return {"timestamp": _et_stamp(now, nanos=True), "is_open": self.is_open(),
                "next_open": _et_stamp(next_open), "next_close": _et_stamp(next_close)}

    def calendar_json(self, start: str | None, end: str | None) -> list[dict]:
        lo = dt.date.fromisoformat(start[:10]) if start else dt.date(2000, 1, 1)
        hi = dt.date.fromisoformat(end[:10]) if end else dt.date(2030, 12, 31)
        return [{"date": d.isoformat(), "open": o.strftime("%H:%M"), "close": c.strftime("%H:%M"),
                 "session_open": "0400", "session_close": "2000", "settlement_date": (d + dt.timedelta(days=1)).isoformat()}
                for d, (o, c) in sorted(_nyse_sessions().items()) if lo <= d <= hi]

    def _new_order(self, body: dict, *, order_class: str, **over: Any) -> dict:
        stamp = self._stamp()
        o = {
            "id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "created_at": stamp, "updated_at": stamp, "submitted_at": stamp, "filled_at": None, "expired_at": None,
            "expires_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-stub/{body['symbol']}")),
            "symbol": body["symbol"], "asset_class": "us_equity", "notional": None, "qty": _num(float(body["qty"])),
            "filled_qty": "0", "filled_avg_price": None, "order_class": order_class, "order_type": "market",
            "type": "market", "side": body["side"], "position_intent": None, "time_in_force": body["time_in_force"],
            "limit_price": None, "stop_price": None, "status": "new" if self.is_open() else "accepted",
            "extended_hours": bool(body.get("extended_hours", False)), "legs": None, "trail_percent": None,
            "trail_price": None, "hwm": None, "subtag": None, "source": None,
        }
        o.update(over)
        return o

    def submit(self, body: dict) -> tuple[int, dict]:
        """POST /v2/orders: Alpaca's checks, then store (and maybe fill) the order."""
        def bad(msg: str) -> tuple[int, dict]:
            return 422, {"code": 40010001, "message": msg}

        if not isinstance(body, dict):
            return bad("invalid body")
        for k in ("symbol", "side", "type", "time_in_force"):
            if not body.get(k):
                return bad(f"{k} is required")
        try:
            qty = float(body.get("qty"))
        except (TypeError, ValueError):
            return bad("qty is required")
        if qty <= 0:
            return bad("qty must be > 0")
        if body["side"] not in ("buy", "sell"):
            return bad("invalid side")
        if body["type"] != "market":
            return bad("the stub only takes market orders")
        if body["time_in_force"] not in _TIME_IN_FORCE:
            return bad("invalid time_in_force")
        cid = body.get("client_order_id")
        if cid is not None and len(cid) > MAX_CLIENT_ORDER_ID:
            return bad(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID} characters")
        if cid is not None and self.by_client_id(cid) is not None:
            return bad("client_order_id must be unique")
        sym = body["symbol"]
        if sym in self.unknown:
            return bad(f'asset "{sym}" not found')
        if sym in self.untradable:
            return 422, {"code": 42210000, "message": f"asset {sym} is not tradable"}
        if sym in self.halted:
            return 403, {"code": 40310000, "message": f"trading is halted for {sym}"}
        order_class = body.get("order_class") or "simple"
        tp, sl = body.get("take_profit"), body.get("stop_loss")
        if order_class == "bracket" and not (tp and sl):
            return bad("bracket orders must have take_profit and stop_loss")
        if order_class == "oto" and bool(tp) == bool(sl):
            return bad("oto orders must have either take_profit or stop_loss")
        if order_class in ("bracket", "oto") and body["time_in_force"] not in ("day", "gtc"):
            return bad("bracket orders must be day or gtc")
        if order_class == "simple" and (tp or sl):
            return bad("take_profit and stop_loss need order_class bracket or oto")
        if order_class not in ("simple", "bracket", "oto"):
            return bad(f"invalid order_class {order_class}")
        px = self.prices.get(sym)
        if tp and sl and float(tp["limit_price"]) <= float(sl["stop_price"]):
            return bad("take_profit.limit_price must be > stop_loss.stop_price")
        if body["side"] == "buy" and px is not None and qty * px > self.buying_power() + 1e-9:
            return 403, {"code": 40310000, "message": "insufficient buying power",
                         "buying_power": _num(round(self.buying_power(), 2)), "cost_basis": _num(round(qty * px, 2))}
        if body["side"] == "sell":
            existing = self.positions.get(sym, {}).get("qty", 0)
            reserved = self.held_for_orders(sym)
            available = existing - reserved
            if qty > available:  # the stub account cannot short
                related = [o["id"] for o in self.orders if o["symbol"] == sym and o["side"] == "sell"
                           and o["status"] in OPEN]
                return 403, {"available": str(available), "code": 40310000, "existing_qty": str(existing),
                             "held_for_orders": str(reserved), "related_orders": related, "symbol": sym,
                             "message": f"insufficient qty available for order (requested: {_num(qty)}, "
                                        f"available: {available})"}

        parent = self._new_order(body, order_class="" if order_class == "simple" else order_class)
        legs = []
        exit_side = "sell" if body["side"] == "buy" else "buy"
        leg_body = {**body, "side": exit_side, "client_order_id": None}
        if tp:
            legs.append(self._new_order(leg_body, order_class=order_class, type="limit", order_type="limit",
                                        limit_price=_num(float(tp["limit_price"])), status="held"))
        if sl:
            legs.append(self._new_order(leg_body, order_class=order_class, type="stop", order_type="stop",
                                        stop_price=_num(float(sl["stop_price"])), status="held"))
        parent["_leg_ids"] = [leg["id"] for leg in legs]
        for leg in legs:
            leg["_parent_id"] = parent["id"]
        self.orders.append(parent)
        self.orders.extend(legs)
        if self.fill_market_orders and px is not None and self.is_open():
            self._fill(parent, px)
        return 200, self.render(parent, nested=True)

    def render(self, o: dict, nested: bool) -> dict:
        out = {k: v for k, v in o.items() if not k.startswith("_")}
        if nested and o.get("_leg_ids"):
            out["legs"] = [self.render(leg, nested=False) for leg in self._legs(o)]
        return out

    def list_orders(self, q: dict[str, str]) -> list[dict]:
        status = q.get("status", "open")
        nested = q.get("nested", "false").lower() == "true"
        leg_ids = {i for o in self.orders for i in o.get("_leg_ids", [])}
        rows = [o for o in self.orders if not (nested and o["id"] in leg_ids)]
        if status == "open":
            rows = [o for o in rows if o["status"] in OPEN]
        elif status == "closed":
            rows = [o for o in rows if o["status"] not in OPEN]
        if q.get("symbols"):
            wanted = set(q["symbols"].split(","))
            rows = [o for o in rows if o["symbol"] in wanted]
        if q.get("side"):
            rows = [o for o in rows if o["side"] == q["side"]]
        if q.get("after"):
            after = dt.datetime.fromisoformat(q["after"].replace("Z", "+00:00"))
            rows = [o for o in rows if dt.datetime.fromisoformat(o["submitted_at"].replace("Z", "+00:00")) > after]
        if q.get("until"):
            until = dt.datetime.fromisoformat(q["until"].replace("Z", "+00:00"))
            rows = [o for o in rows if dt.datetime.fromisoformat(o["submitted_at"].replace("Z", "+00:00")) < until]
        if q.get("direction", "desc") == "desc":
            rows = rows[::-1]
        limit = min(int(q.get("limit", 50)), 500)
        return [self.render(o, nested) for o in rows[:limit]]

    def cancel(self, order_id: str) -> tuple[int, dict | None]:
        o = next((o for o in self.orders if o["id"] == order_id), None)
        if o is None:
            return 404, {"code": 40410000, "message": "order not found"}
        if o["status"] == "pending_cancel":
            return 422, {"code": 42210000, "message": "order pending cancel"}
        if o["status"] not in OPEN:
            return 422, {"code": 42210000, "message": f'order is already in "{o["status"]}" state'}
        stamp = self._stamp()
        # cancelling an entry cancels its exits; cancelling one exit cancels its sibling (one-cancels-other)
        family = [o] + self._legs(o)
        if o.get("_parent_id"):
            family = self._legs(self.order(o["_parent_id"]))
        due = None if self.cancel_delay is None else self._answered + 1 + self.cancel_delay
        for x in family:
            if x["status"] in OPEN:
                x.update(status="pending_cancel", updated_at=stamp)
                if due is not None:
                    self._pending_cancels.append((due, x))
                else:
                    self._pending_cancels.append((1 << 62, x))  # only a clock move or settle_cancels()
        return 204, None


class _Handler(BaseHTTPRequestHandler):
    server: "_StubServer"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up (timeout tests)
            self.wfile.write(data)

    def _serve(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        authorized = (self.headers.get("APCA-API-KEY-ID") == state.key_id
                      and self.headers.get("APCA-API-SECRET-KEY") == state.secret)
        with state.lock:
            state.received.append(Received(method, path, query, body, authorized))
        if not authorized:
            return self._send(401, {"code": 40110000, "message": "request is not authorized"})
        with state.lock:
            fault = next((f for f in state.faults if f.matches(method, path) and f.seen < f.after + f.times), None)
            if fault is not None:
                fault.seen += 1
                if fault.seen <= fault.after:
                    fault = None
        if fault is not None:
            if fault.commit and method == "POST" and path == "/v2/orders":
                with state.lock:
                    state.submit(body)
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status == 200:  # slow but correct
                fault = None
            elif fault.status is None:  # the answer never comes back
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            else:
                state.answered()  # counted before the reply leaves, so the client's next request sees it
                self._send(fault.status, fault.body or {"code": 50010000, "message": "internal server error"})
                return
        with state.lock:
            status, payload = self._route(state, method, path, query, body)
        # Counted before the reply is written: a client that sends its next request as soon as it has the reply
        # must find the cancels due by then confirmed (counting after the write raced with that next request).
        state.answered()
        self._send(status, payload)

    def _route(self, state: StubState, method: str, path: str, q: dict, body: Any) -> tuple[int, Any]:
        not_found = (404, {"code": 40410000, "message": "order not found"})
        if method == "GET" and path == "/v2/account":
            return 200, state.account_json()
        if method == "GET" and path == "/v2/clock":
            return 200, state.clock_json()
        if method == "GET" and path == "/v2/calendar":
            return 200, state.calendar_json(q.get("start"), q.get("end"))
        if method == "GET" and path == "/v2/positions":
            return 200, [state._position_json(s, p) for s, p in sorted(state.positions.items())]
        if path == "/v2/orders" and method == "POST":
            return state.submit(body)
        if path == "/v2/orders" and method == "GET":
            return 200, state.list_orders(q)
        if path == "/v2/orders:by_client_order_id" and method == "GET":
            o = state.by_client_id(q.get("client_order_id", ""))
            if o is None:
                return not_found
            return 200, state.render(o, nested=True)
        if path.startswith("/v2/orders/"):
            oid = path.rsplit("/", 1)[1]
            if method == "DELETE":
                return state.cancel(oid)
            if method == "GET":
                o = next((o for o in state.orders if o["id"] == oid), None)
                return (200, state.render(o, nested=q.get("nested", "false") == "true")) if o else not_found
        return 404, {"code": 40400000, "message": "endpoint not found"}


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: StubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class AlpacaStub:
    """A running stub: point alpaca-py at ``url`` (``url_override``) with ``key_id``/``secret``."""

    url: str
    key_id: str
    secret: str
    state: StubState

    def headers(self) -> dict[str, str]:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}

    def env(self) -> dict[str, str]:
        """Environment variables that make ``AlpacaBroker.from_env()`` talk to this stub."""
        return {"APCA_API_KEY_ID": self.key_id, "APCA_API_SECRET_KEY": self.secret,
                "APCA_API_BASE_URL": self.url, "APCA_PAPER": "true"}


@contextlib.contextmanager
def alpaca_stub(key_id: str = "PKSTUBTESTKEY0000001", secret: str | None = None) -> Iterator[AlpacaStub]:
    """Run the stub on 127.0.0.1 (random port) for the ``with`` block. The secret is random unless given, so
    a test can look for it in error messages."""
    secret = secret or "stub-secret-" + secrets.token_hex(12)
    state = StubState(key_id=key_id, secret=secret)
    server = _StubServer(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield AlpacaStub(f"http://127.0.0.1:{server.server_address[1]}", key_id, secret, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
