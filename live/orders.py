"""From the strategy's order intents to broker requests: idempotent ids, limits, and submission.

The ``client_order_id`` is a pure function of strategy, trading date, 15-minute slot, symbol and side (never the
quantity), so a retried or duplicated cycle in the same slot names the same orders, finds them at the broker and
submits nothing new.

Example:
    >>> import datetime as dt
    >>> client_order_id("prophet-trend", dt.date(2022, 6, 1), 63, "AAPL", "buy")
    'prophet-trend-20220601-s63-AAPL-buy'
    >>> is_ours("prophet-trend", "prophet-trend-20220601-s63-AAPL-buy"), is_ours("prophet-trend", "manual-1")
    (True, False)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Iterable, Mapping

from brokers.base import (
    Broker, BrokerError, BrokerOrder, BrokerPosition, DuplicateOrderError, OrderRefused, OrderRequest,
)
from strategies.params import StrategyParams
from strategies.sizing import OrderIntent

MAX_ID_LENGTH = 128  # Alpaca's limit on client_order_id
EXIT_ORDER_TYPES = frozenset({"limit", "stop", "stop_limit", "trailing_stop"})


def _name_part(name: str) -> str:
    # Long names are shortened with a hash so every id still fits in 128 characters and stays unique per name.
    if len(name) <= 40:
        return name
    return name[:31] + "~" + hashlib.sha256(name.encode()).hexdigest()[:8]


def client_order_id(strategy: str, trading_date: dt.date, slot: int, symbol: str, side: str) -> str:
    """The idempotency key of one order; at most 128 characters."""
    text = f"{_name_part(strategy)}-{trading_date:%Y%m%d}-s{slot:02d}-{symbol}-{side}"
    if len(text) > MAX_ID_LENGTH:  # only with absurd symbols; keep the date and slot readable
        text = text[:MAX_ID_LENGTH - 9] + "~" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return text


def is_ours(strategy: str, order_id: str | None) -> bool:
    """Whether an order's client id was made by :func:`client_order_id` for this strategy."""
    pattern = re.escape(_name_part(strategy)) + r"-\d{8}-s\d{2}-"
    return bool(order_id) and re.match(pattern, order_id) is not None


@dataclass(frozen=True)
class Skipped:
    """An intent the limits removed or changed, and why."""

    symbol: str
    side: str
    action: str  # skipped | reduced
    reason: str


def apply_limits(
    intents: Iterable[OrderIntent],
    positions: Mapping[str, BrokerPosition],
    *,
    open_symbols: set[str],
    universe: Iterable[str],
    max_order_notional: float | None,
    max_positions: int | None,
) -> tuple[list[OrderIntent], list[Skipped]]:
    """The intents that may be sent, in order, and what was skipped or reduced.

    Symbols with open orders are left alone (the next cycle sees how they end); sells never exceed the shares
    held; buys must be in the configured universe, fit ``max_order_notional`` (reduced to whole shares) and keep
    the number of positions within ``max_positions``.
    """
    intents = list(intents)
    universe = set(universe)
    kept: list[OrderIntent] = []
    notes: list[Skipped] = []
    held = {s for s, p in positions.items() if p.qty > 0}
    for o in (i for i in intents if i.side == "sell"):
        have = positions[o.symbol].qty if o.symbol in positions else 0
        if o.symbol in open_symbols:
            notes.append(Skipped(o.symbol, o.side, "skipped", "an open (or just cancelled) order exists for this symbol"))
        elif have <= 0:
            notes.append(Skipped(o.symbol, o.side, "skipped", "not held"))
        else:
            if o.qty > have:
                notes.append(Skipped(o.symbol, o.side, "reduced", f"only {have} held, not {o.qty}"))
            kept.append(replace(o, qty=min(o.qty, have)))
            held.discard(o.symbol)
    for o in (i for i in intents if i.side == "buy"):
        if o.symbol in open_symbols:
            notes.append(Skipped(o.symbol, o.side, "skipped", "an open (or just cancelled) order exists for this symbol"))
            continue
        if o.symbol not in universe:
            notes.append(Skipped(o.symbol, o.side, "skipped", "not in the configured universe"))
            continue
        if max_positions is not None and o.symbol not in held and len(held) >= max_positions:
            notes.append(Skipped(o.symbol, o.side, "skipped", f"MAX_POSITIONS={max_positions} reached"))
            continue
        qty = o.qty
        if max_order_notional is not None and qty * o.price > max_order_notional:
            qty = math.floor(max_order_notional / o.price)
            if qty < 1:
                notes.append(Skipped(o.symbol, o.side, "skipped", f"one share exceeds MAX_ORDER_NOTIONAL={max_order_notional:g}"))
                continue
            notes.append(Skipped(o.symbol, o.side, "reduced",
                                 f"{o.qty} -> {qty} shares to stay within MAX_ORDER_NOTIONAL={max_order_notional:g}"))
        kept.append(replace(o, qty=qty))
        held.add(o.symbol)
    return kept, notes


def to_request(intent: OrderIntent, params: StrategyParams, trading_date: dt.date, slot: int) -> OrderRequest:
    """A market order; buys become bracket orders when the strategy has a stop-loss or take-profit."""
    stop = take = None
    if intent.side == "buy":
        if params.stop_loss is not None:
            stop = round(intent.price * (1 - params.stop_loss), 2)
        if params.take_profit is not None:
            take = round(intent.price * (1 + params.take_profit), 2)
    cid = client_order_id(params.name, trading_date, slot, intent.symbol, intent.side)
    return OrderRequest(intent.symbol, intent.side, int(intent.qty), cid, stop_loss_price=stop, take_profit_price=take)


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
                        ) -> tuple[list[dict], BrokerError | None]:
    """Submit each request unless an order with its id exists; one refused order never stops the others.

    Returns a record for every planned order, each with its ``fate``: ``sent``, ``existing`` (found at the
    broker), ``dry_run``, ``refused`` (:class:`~brokers.base.OrderRefused`: the broker's ``refusal`` reason and
    HTTP ``refusal_status`` are kept, and the symbol is skipped), ``skipped`` (its exit leg could not be cancelled),
    or, after an account-level :class:`~brokers.base.BrokerError`, ``error`` for the order that met it and
    ``not_sent`` for those after it; that failure is returned too. Protective exit legs (``exits``) of a symbol
    about to be sold are cancelled first, or the broker would hold the shares for them. ``on_order`` sees every
    order the broker answered with (the ledger takes them in).
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
                try:
                    for leg in (exits or {}).get(request.symbol, []):
                        broker.cancel(leg.id)
                except OrderRefused as exc:
                    records.append(order_record(request, intent, None, status="skipped", new=False, fate="skipped",
                                                error=f"its exit leg could not be cancelled: {exc.reason}"))
                    continue
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


def plan_records(orders: list[dict], skipped: list[dict]) -> list[dict]:
    """Every order the cycle planned and its fate: the orders it sent or meant to, and the intents the limits
    skipped (``fate: skipped``) or reduced (listed with the order they became)."""
    plan = [{k: o.get(k) for k in ("symbol", "side", "qty", "client_order_id", "fate", "status")}
            | ({"reason": o["error"]} if o.get("error") else {}) for o in orders]
    plan += [{"symbol": s["symbol"], "side": s["side"], "qty": None, "client_order_id": None, "fate": "skipped",
              "status": "skipped", "reason": s["reason"]} for s in skipped if s.get("action") == "skipped"]
    return plan


def skipped_records(notes: list[Skipped]) -> list[dict]:
    return [asdict(n) for n in notes]
