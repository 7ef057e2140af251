"""From the rulebook's planned orders to broker requests: idempotent ids and submission.

The ``client_order_id`` is a pure function of strategy, decision (the trading date in the daily cadence), symbol
and side (never the quantity), so a retried or duplicated cycle of the same decision names the same orders, finds
them at the broker and submits nothing new. Ids fit Alpaca's 48 characters.

Example:
    >>> import datetime as dt
    >>> client_order_id("prophet-trend", dt.date(2022, 6, 1), "AAPL", "buy")
    'prophet-trend-20220601-AAPL-buy'
    >>> is_ours("prophet-trend", "prophet-trend-20220601-AAPL-buy"), is_ours("prophet-trend", "manual-1")
    (True, False)
    >>> is_ours("prophet-trend", "prophet-trend-fast-20220601-AAPL-buy")  # a variant's order is not ours
    False
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from typing import Any, Callable, Mapping

from brokers.base import Broker, BrokerError, BrokerOrder, DuplicateOrderError, OrderRefused, OrderRequest
from strategies.base import OrderIntent
from strategies.rules import PlannedOrder

MAX_ID_LENGTH = 48  # Alpaca refuses a longer client_order_id
EXIT_ORDER_TYPES = frozenset({"limit", "stop", "stop_limit", "trailing_stop"})
RELEASE_WAIT_S = 10.0  # how long a sell waits for the broker to confirm its exit legs' cancels


def _name_part(name: str) -> str:
    # Names are at most 20 characters (strategies.loader.check_name); older, longer ones keep a hashed stem.
    if len(name) <= 20:
        return name
    return name[:11] + "~" + hashlib.sha256(name.encode()).hexdigest()[:8]


def client_order_id(strategy: str, trading_date: dt.date, symbol: str, side: str, slot: int | None = None) -> str:
    """The idempotency key of one order: daily cadence by date, an intraday one by date and slot; <= 48 chars."""
    decision = f"{trading_date:%Y%m%d}" + ("" if slot is None else f"s{slot:02d}")
    text = f"{_name_part(strategy)}-{decision}-{symbol}-{side}"
    if len(text) > MAX_ID_LENGTH:  # only with absurd symbols; keep the name and decision readable
        text = text[:MAX_ID_LENGTH - 9] + "~" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return text


def is_ours(strategy: str, order_id: str | None) -> bool:
    """Whether an order's client id was made by :func:`client_order_id` for this strategy (ids of the earlier
    ``-sNN-`` slot format count too, so orders placed before an upgrade are still recognised)."""
    pattern = re.escape(_name_part(strategy)) + r"-\d{8}(-?s\d{2,3})?-"  # sNNN: slots of a 1- or 5-minute cadence
    return bool(order_id) and re.match(pattern, order_id) is not None


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
        if order.qty != request.qty:  # an earlier invocation of this slot sized it differently
            record["qty"] = order.qty
    if error:
        record["error"] = error
    return record


def submit_idempotently(broker: Broker, planned: list[tuple[OrderRequest, OrderIntent]], *, dry_run: bool,
                        exits: Mapping[str, list[BrokerOrder]] | None = None,
                        on_order: Callable[[BrokerOrder], None] | None = None,
                        release_wait_s: float = RELEASE_WAIT_S) -> tuple[list[dict], BrokerError | None]:
    """Submit each request unless an order with its id exists; one refused order never stops the others.

    Returns a record for every planned order, each with its ``fate``: ``sent``, ``existing`` (found at the
    broker), ``dry_run``, ``refused`` (:class:`~brokers.base.OrderRefused`: the broker's ``refusal`` reason and
    HTTP ``refusal_status`` are kept, and the symbol is skipped), ``skipped`` (its exit leg could not be cancelled),
    or, after an account-level :class:`~brokers.base.BrokerError`, ``error`` for the order that met it and
    ``not_sent`` for those after it; that failure is returned too. Protective exit legs (``exits``) of a symbol
    about to be sold are cancelled first, or the broker would hold the shares for them; the sell waits up to
    ``release_wait_s`` for the broker to release them (Alpaca's cancels go ``pending_cancel`` first), and is
    refused by the broker, per order, if they are still held then. ``on_order`` sees every order the broker
    answered with (the ledger takes them in).
    """
    records: list[dict] = []
    for n, (request, intent) in enumerate(planned):
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

