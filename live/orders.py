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
from typing import Any, Mapping

from brokers.base import Broker, BrokerError, BrokerOrder, DuplicateOrderError, OrderRequest
from strategies.base import OrderIntent
from strategies.rules import PlannedOrder, Skipped, skipped_records  # noqa: F401  (re-exported for the cycle)

MAX_ID_LENGTH = 48  # Alpaca refuses a longer client_order_id
EXIT_ORDER_TYPES = frozenset({"limit", "stop", "stop_limit", "trailing_stop"})


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


def order_record(request: OrderRequest, intent: OrderIntent | None, order: BrokerOrder | None, *, status: str,
                 new: bool, error: str | None = None) -> dict[str, Any]:
    """One entry of the summary's ``orders`` list."""
    record: dict[str, Any] = {
        "symbol": request.symbol, "side": request.side, "qty": request.qty,
        "client_order_id": request.client_order_id, "status": status, "new": new,
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
                        exits: Mapping[str, list[BrokerOrder]] | None = None) -> tuple[list[dict], BrokerError | None]:
    """Submit each request unless an order with its id exists; stop at the first broker failure.

    Returns the records (submitted, found, or would-be in a dry run) and the failure, if any. Protective exit legs
    (``exits``) of a symbol about to be sold are cancelled first, or the broker would hold the shares for them.
    """
    records: list[dict] = []
    for request, intent in planned:
        try:
            existing = broker.order_by_client_id(request.client_order_id)
            if existing is not None:
                records.append(order_record(request, intent, existing, status=existing.status, new=False))
                continue
            if dry_run:
                records.append(order_record(request, intent, None, status="dry_run", new=False))
                continue
            if request.side == "sell":
                for leg in (exits or {}).get(request.symbol, []):
                    broker.cancel(leg.id)
            try:
                order = broker.submit(request)
                records.append(order_record(request, intent, order, status=order.status, new=True))
            except DuplicateOrderError:  # a concurrent invocation won the race: theirs is the order
                order = broker.order_by_client_id(request.client_order_id)
                records.append(order_record(request, intent, order, status=order.status if order else "duplicate",
                                            new=False))
        except BrokerError as exc:
            records.append(order_record(request, intent, None, status="error", new=False, error=str(exc)))
            return records, exc
    return records, None

