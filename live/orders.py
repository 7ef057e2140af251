"""From the rulebook's planned orders to broker requests: idempotent ids with a check part, and submission.

The ``client_order_id`` is a pure function of strategy, decision (the trading date in the daily cadence, date and
slot intraday), symbol and side (never the quantity), so a retried or duplicated cycle of the same decision names
the same orders, finds them at the broker and submits nothing new. Its grammar::

    <strategy>-<YYYYMMDD>[s<slot>]-<SYMBOL>-<b|s><check>

``check`` is six hex digits of the sha-256 of strategy, decision, symbol and side. An id is the strategy's only
if it parses exactly under the grammar *and* its check matches (:func:`is_ours`): a user's order named
``prophet-trend-foo``, or ``prophet-trend-20220601-AAPL-buy`` typed by hand, is not the bot's, nor is another
strategy's (``pt`` never claims ``pt-20240101-...``: the check covers the whole name, and strategy names may not
hold a date-like part, ``strategies.loader.check_name``). The longest id (a 20-character name, a 3-digit slot, a
6-character symbol) is 48 characters, Alpaca's limit; a longer symbol is cut in the id, and the check then
covers the full symbol the broker reports with the order.

Example:
    >>> import datetime as dt
    >>> cid = client_order_id("prophet-trend", dt.date(2022, 6, 1), "AAPL", "buy"); cid
    'prophet-trend-20220601-AAPL-bc7bb1d'
    >>> is_ours("prophet-trend", cid), is_ours("prophet-trend", "manual-1")
    (True, False)
    >>> is_ours("prophet-trend", "prophet-trend-20220601-AAPL-buy")  # the old shape, or a hand-typed id
    False
    >>> is_ours("prophet-trend", client_order_id("prophet-trend-fast", dt.date(2022, 6, 1), "AAPL", "buy"))
    False
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from brokers.base import Broker, BrokerError, BrokerOrder, DuplicateOrderError, OrderRefused, OrderRequest
from strategies.base import OrderIntent
from strategies.rules import PlannedOrder

MAX_ID_LENGTH = 48  # Alpaca refuses a longer client_order_id
EXIT_ORDER_TYPES = frozenset({"limit", "stop", "stop_limit", "trailing_stop"})
RELEASE_WAIT_S = 10.0  # how long a sell waits for the broker to confirm its exit legs' cancels
CHECK_LENGTH = 6
_SIDES = {"buy": "b", "sell": "s"}
_GRAMMAR = re.compile(r"(?P<name>.+)-(?P<decision>\d{8}(?:s\d{2,3})?)-(?P<symbol>.+)-(?P<side>[bs])"
                      r"(?P<check>[0-9a-f]{%d})" % CHECK_LENGTH)


def _name_part(name: str) -> str:
    # Names are at most 20 characters (strategies.loader.check_name); older, longer ones keep a hashed stem.
    if len(name) <= 20:
        return name
    return name[:11] + "~" + hashlib.sha256(name.encode()).hexdigest()[:8]


def _check(strategy: str, decision: str, symbol: str, side: str) -> str:
    return hashlib.sha256(f"{strategy}|{decision}|{symbol}|{side}".encode()).hexdigest()[:CHECK_LENGTH]


def client_order_id(strategy: str, trading_date: dt.date, symbol: str, side: str, slot: int | None = None) -> str:
    """The idempotency key of one order: daily cadence by date, an intraday one by date and slot; <= 48 chars.

    >>> import datetime as dt
    >>> len(client_order_id("a" * 20, dt.date(2022, 6, 1), "GOOGLX", "sell", slot=390))
    48
    """
    if side not in _SIDES:
        raise ValueError(f"side must be buy or sell, got {side!r}")
    decision = f"{trading_date:%Y%m%d}" + ("" if slot is None else f"s{slot:02d}")
    head = f"{_name_part(strategy)}-{decision}-"
    tail = f"-{_SIDES[side]}{_check(strategy, decision, symbol, side)}"
    return head + symbol[:max(1, MAX_ID_LENGTH - len(head) - len(tail))] + tail


@dataclass(frozen=True)
class OrderId:
    """An id that parsed under the grammar (not yet checked against a strategy)."""

    name: str
    decision: str
    symbol: str
    side: str
    check: str


def parse_order_id(order_id: str | None) -> OrderId | None:
    """The parts of an id of the bot's grammar, or ``None``.

    >>> parse_order_id("pt-20220601s40-KO-b0a1b2c")
    OrderId(name='pt', decision='20220601s40', symbol='KO', side='buy', check='0a1b2c')
    >>> parse_order_id("prophet-trend-foo") is None
    True
    """
    match = _GRAMMAR.fullmatch(order_id or "")
    if match is None:
        return None
    side = "buy" if match["side"] == "b" else "sell"
    return OrderId(match["name"], match["decision"], match["symbol"], side, match["check"])


def is_ours(strategy: str, order_id: str | None, symbol: str | None = None, side: str | None = None) -> bool:
    """Whether ``order_id`` was made by :func:`client_order_id` for this strategy: it parses exactly, names this
    strategy, and its check matches. ``symbol``/``side``: what the broker says of the order (then the id must
    agree with them, and a symbol cut short in the id is checked in full)."""
    if len(order_id or "") > MAX_ID_LENGTH:
        return False
    parsed = parse_order_id(order_id)
    if parsed is None or parsed.name != _name_part(strategy) or (side is not None and side != parsed.side):
        return False
    full = parsed.symbol
    if symbol is not None:
        if not symbol.startswith(parsed.symbol):
            return False
        full = symbol
    return parsed.check == _check(strategy, parsed.decision, full, parsed.side)


def to_request(order: PlannedOrder, strategy: str, trading_date: dt.date, slot: int | None = None) -> OrderRequest:
    """A market order; buys with exit prices (the rulebook's stops) become bracket orders."""
    intent = order.intent
    cid = client_order_id(strategy, trading_date, intent.symbol, intent.side, slot)
    return OrderRequest(intent.symbol, intent.side, int(intent.qty), cid, stop_loss_price=order.stop_loss_price,
                        take_profit_price=order.take_profit_price)


FATES = ("sent", "existing", "refused", "skipped", "dry_run", "error", "not_sent")


def order_record(request: OrderRequest, intent: OrderIntent | None, order: BrokerOrder | None, *, status: str,
                 new: bool, error: str | None = None, fate: str | None = None) -> dict[str, Any]:
    """One entry of the summary's ``orders`` list; ``fate`` is what became of it (one of :data:`FATES`)."""
    record: dict[str, Any] = {
        "symbol": request.symbol, "side": request.side, "qty": request.qty,
        "client_order_id": request.client_order_id, "status": status, "new": new,
        "fate": fate or ("sent" if new else "existing"),
        "reason": intent.reason if intent else None, "price": intent.price if intent else None,
    }
    if request.stop_loss_price is not None or request.take_profit_price is not None:
        record.update(stop_loss_price=request.stop_loss_price, take_profit_price=request.take_profit_price)
    if order is not None:
        record.update(broker_order_id=order.id, filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price)
        if order.fee is not None:  # what the fill cost beyond its price: the drift explains the return with it
            record["fee"] = round(order.fee, 6)  # cents (and a commission's fractions), without float noise
            if order.fee_estimated:
                record["fee_estimated"] = True
        if order.qty != request.qty:  # an earlier invocation of this slot sized it differently
            record["qty"] = order.qty
    if error:
        record["error"] = error
    return record


def submit_idempotently(broker: Broker, planned: list[tuple[OrderRequest, OrderIntent]], *, dry_run: bool,
                        exits: Mapping[str, list[BrokerOrder]] | None = None,
                        on_order: Callable[[BrokerOrder], None] | None = None,
                        release_wait_s: float = RELEASE_WAIT_S,
                        fence: Callable[[], None] | None = None) -> tuple[list[dict], Exception | None]:
    """Submit each request unless an order with its id exists; one refused order never stops the others.

    Returns a record for every planned order, each with its ``fate``: ``sent``, ``existing`` (found at the
    broker), ``dry_run``, ``refused`` (:class:`~brokers.base.OrderRefused`: the broker's ``refusal`` reason and
    HTTP ``refusal_status`` are kept, and the symbol is skipped), ``skipped`` (its exit leg could not be cancelled),
    or, after an account-level :class:`~brokers.base.BrokerError`, ``error`` for the order that met it and
    ``not_sent`` for those after it; that failure is returned too. Protective exit legs (``exits``) of a symbol
    about to be sold are cancelled first, or the broker would hold the shares for them; the sell waits up to
    ``release_wait_s`` for the broker to release them (Alpaca's cancels go ``pending_cancel`` first), and is
    refused by the broker, per order, if they are still held then. ``on_order`` sees every order the broker
    answered with (the ledger takes them in). ``fence`` (the lease's :meth:`~live.lease.StoreLease.fence`) runs
    before every cancel and every submit: when it raises (the lease was lost), this order and those after it are
    ``not_sent`` and its error is returned.
    """
    records: list[dict] = []
    for n, (request, intent) in enumerate(planned):
        if fence is not None and not dry_run:
            try:
                fence()
            except Exception as exc:  # noqa: BLE001 - the lease is gone: nothing more may be sent
                records.extend(order_record(r, i, None, status="not_sent", new=False, fate="not_sent",
                                            error=str(exc) if r is request else None) for r, i in planned[n:])
                return records, exc
        try:
            existing = broker.order_by_client_id(request.client_order_id)
            if existing is not None:
                if on_order:
                    on_order(existing)
                records.append(order_record(request, intent, existing, status=existing.status, new=False))
                continue
            if dry_run:
                records.append(order_record(request, intent, None, status="dry_run", new=False, fate="dry_run"))
                continue
            if request.side == "sell":
                legs = (exits or {}).get(request.symbol, [])
                try:
                    for leg in legs:
                        broker.cancel(leg.id)
                except OrderRefused as exc:
                    records.append(order_record(request, intent, None, status="skipped", new=False, fate="skipped",
                                                error=f"its exit leg could not be cancelled: {exc.reason}"))
                    continue
                if legs:
                    wait_for_release(broker, request.symbol, request.qty, release_wait_s)
            try:
                order = broker.submit(request)
                if on_order:
                    on_order(order)
                records.append(order_record(request, intent, order, status=order.status, new=True))
            except DuplicateOrderError:  # a concurrent invocation won the race: theirs is the order
                order = broker.order_by_client_id(request.client_order_id)
                if order is not None and on_order:
                    on_order(order)
                records.append(order_record(request, intent, order, status=order.status if order else "duplicate",
                                            new=False))
        except OrderRefused as exc:  # this one order: note the broker's reason, go on with the others
            record = order_record(request, intent, None, status="refused", new=False, fate="refused", error=exc.reason)
            record.update(refusal=exc.reason, refusal_status=exc.status)
            records.append(record)
        except BrokerError as exc:
            records.append(order_record(request, intent, None, status="error", new=False, fate="error", error=str(exc)))
            records.extend(order_record(r, i, None, status="not_sent", new=False, fate="not_sent")
                           for r, i in planned[n + 1:])
            return records, exc
    return records, None


def wait_for_release(broker: Broker, symbol: str, qty: int, timeout_s: float) -> bool:
    """Poll until ``qty`` shares of ``symbol`` are available to sell (exit legs' cancels confirmed), or time out.

    Brokers that do not report ``qty_available`` (None) are taken at their word at once.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.1
    while True:
        held = broker.positions().get(symbol)
        available = None if held is None else held.qty_available
        if available is None or available >= qty:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 1.0)


def plan_records(orders: list[dict], skipped: list[dict]) -> list[dict]:
    """Every order the cycle planned and its fate: the orders it sent or meant to, and the intents the limits
    skipped (``fate: skipped``) or reduced (listed with the order they became)."""
    plan = [{k: o.get(k) for k in ("symbol", "side", "qty", "client_order_id", "fate", "status")}
            | ({"reason": o["error"]} if o.get("error") else {}) for o in orders]
    plan += [{"symbol": s["symbol"], "side": s["side"], "qty": None, "client_order_id": None, "fate": "skipped",
              "status": "skipped", "reason": s["reason"]} for s in skipped if s.get("action") == "skipped"]
    return plan

