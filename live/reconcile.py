"""Reconcile before deciding: cancel this strategy's stale open orders, note symbols that still have open orders.

Orders of other origins (manual trades, other strategies) are never cancelled; their symbols are skipped this cycle,
and so are symbols whose order was just cancelled (the cancellation may still be pending at the broker).
Protective exit legs of *our own* bracket parents (``our_legs``, known from the ledger) are kept: they guard held
positions, and are cancelled only when the cycle sells. A sell limit or stop that is not a leg of ours (a user's
GTC limit sell) is someone else's open order like any other: never cancelled, and its symbol sits the cycle out.

Example:
    >>> import datetime as dt
    >>> from brokers.base import BrokerOrder
    >>> from live.orders import client_order_id
    >>> ours = client_order_id("pt", dt.date(2022, 6, 1), "KO", "buy", slot=40)
    >>> class Stub:
    ...     canceled = []
    ...     def open_orders(self):
    ...         old = dt.datetime(2022, 6, 1, 14, 0, tzinfo=dt.timezone.utc)
    ...         return [BrokerOrder("1", ours, "KO", "buy", 5, "accepted", old),
    ...                 BrokerOrder("2", "manual", "PG", "buy", 1, "new", old)]
    ...     def cancel(self, order_id): self.canceled.append(order_id)
    >>> r = reconcile(Stub(), "pt", dt.datetime(2022, 6, 1, 19, 45, tzinfo=dt.timezone.utc), stale_minutes=30)
    >>> [c["symbol"] for c in r.canceled], sorted(r.open_symbols)
    (['KO'], ['KO', 'PG'])
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Collection

from brokers.base import Broker, BrokerError, BrokerOrder
from live.orders import EXIT_ORDER_TYPES, is_ours


@dataclass
class Reconciliation:
    canceled: list[dict] = field(default_factory=list)
    open_symbols: set[str] = field(default_factory=set)
    exits: dict[str, list[BrokerOrder]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    our_open_buys: dict[str, int] = field(default_factory=dict)  # unfilled shares of our own open buys (capital)

    def describe(self) -> dict:
        return {"canceled": self.canceled, "open_order_symbols": sorted(self.open_symbols),
                "exit_legs": {s: [o.id for o in legs] for s, legs in sorted(self.exits.items())},
                "errors": self.errors}


def _is_exit_leg(order: BrokerOrder) -> bool:
    return order.side == "sell" and getattr(order, "order_type", "market") in EXIT_ORDER_TYPES


def reconcile(broker: Broker, strategy: str, now: dt.datetime, stale_minutes: float, *,
              our_legs: Collection[str] = (), dry_run: bool = False) -> Reconciliation:
    """Cancel open orders of ``strategy`` older than ``stale_minutes``; report what stays open.

    ``our_legs``: broker ids of the exit legs of this strategy's bracket parents (``Ledger.leg_ids``).
    ``dry_run``: cancel nothing; the stale orders are listed with ``"dry_run": True`` (a dry run only reads)."""
    result = Reconciliation()
    our_legs = set(our_legs)
    for order in broker.open_orders():
        if _is_exit_leg(order) and order.id in our_legs:
            result.exits.setdefault(order.symbol, []).append(order)
            continue
        age = None if order.submitted_at is None else (now - order.submitted_at).total_seconds() / 60
        if is_ours(strategy, order.client_order_id, order.symbol, order.side) and age is not None and age > stale_minutes:
            stale = {"symbol": order.symbol, "side": order.side, "qty": order.qty,
                     "client_order_id": order.client_order_id, "age_minutes": round(age, 1)}
            try:
                if not dry_run:
                    broker.cancel(order.id)
                result.canceled.append(stale | ({"dry_run": True} if dry_run else {}))
            except BrokerError as exc:
                result.errors.append(f"cancel {order.client_order_id}: {exc}")
        if order.side == "buy" and is_ours(strategy, order.client_order_id, order.symbol, order.side):  # cancelled ones too: may still fill
            left = int(order.qty) - int(order.filled_qty or 0)
            result.our_open_buys[order.symbol] = result.our_open_buys.get(order.symbol, 0) + max(0, left)
        # A cancellation may still be pending at the broker, so a just-cancelled symbol waits for the next cycle.
        result.open_symbols.add(order.symbol)
    return result

