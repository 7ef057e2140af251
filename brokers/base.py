"""The one small interface every broker implements, and the values that cross it.

Implementations: ``brokers.alpaca.AlpacaBroker`` (alpaca-py, paper endpoint by default) and
``brokers.paper.PaperBroker`` (SQLite, replayable clock, real exchange calendar).

Example:
    >>> req = OrderRequest("AAPL", "buy", 3, client_order_id="pt-20220601-s62-AAPL-buy")
    >>> req.side, req.qty
    ('buy', 3)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

Side = Literal["buy", "sell"]


class BrokerError(Exception):
    """The broker failed or refused a request (network, HTTP error, insufficient funds, ...)."""


class DuplicateOrderError(BrokerError):
    """An order with this ``client_order_id`` already exists (Alpaca answers HTTP 422)."""


class OrderRefused(BrokerError):
    """The broker refused this one order (not tradable, halted, insufficient buying power or quantity, ...).

    Unlike other :class:`BrokerError` s it says nothing about the account or the connection: the cycle records
    ``reason`` (the broker's own words) and ``status`` (the HTTP status, if any) and goes on with other orders.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Clock:
    """The market clock at ``now`` (timezone-aware)."""

    now: dt.datetime
    is_open: bool
    next_open: dt.datetime
    next_close: dt.datetime


@dataclass(frozen=True)
class Session:
    """One trading day's regular session, timezone-aware open and close (early closes included)."""

    date: dt.date
    open: dt.datetime
    close: dt.datetime


@dataclass(frozen=True)
class Account:
    cash: float
    buying_power: float
    equity: float
    currency: str = "USD"
    # the broker's own id of the account (Alpaca's account id; the paper broker's, kept in its SQLite file): the
    # ledger is bound to it, so a ledger never claims shares in another account
    id: str | None = None


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    qty: int
    avg_entry_price: float
    market_value: float | None = None
    # shares not reserved by open sell orders (Alpaca's qty_available); None where the broker does not say
    qty_available: int | None = None


@dataclass(frozen=True)
class OrderRequest:
    """A whole-share market order; with ``stop_loss_price``/``take_profit_price`` a bracket order."""

    symbol: str
    side: Side
    qty: int
    client_order_id: str
    stop_loss_price: float | None = None
    take_profit_price: float | None = None


@dataclass(frozen=True)
class BrokerOrder:
    id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: int
    status: str  # the broker's own word: new, accepted, filled, canceled, rejected, ...
    submitted_at: dt.datetime | None = None
    filled_qty: int = 0
    filled_avg_price: float | None = None
    # market for entries; limit/stop for the exit legs of a bracket, which stay open while the position is held
    order_type: str = "market"
    # the exit legs of a bracket or OTO parent (their client ids are the broker's, not ours)
    legs: tuple["BrokerOrder", ...] = ()
    # what the fill cost beyond its price (commission and regulatory fees), None where unknown; ``fee_estimated``:
    # the broker does not report it per order (Alpaca books its fees as account activities), so it is the costs
    # model's estimate (strategies.execution) of what the broker charges
    fee: float | None = None
    fee_estimated: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


OPEN_STATUSES = frozenset(
    {"new", "accepted", "pending_new", "accepted_for_bidding", "partially_filled", "held", "pending_replace",
     "pending_cancel", "calculated", "done_for_day"}
)


class Broker(Protocol):
    """What the live cycle needs from a broker. Every method may raise :class:`BrokerError`."""

    name: str

    def clock(self) -> Clock: ...

    def calendar(self, start: dt.date, end: dt.date) -> list[Session]: ...

    def account(self) -> Account: ...

    def positions(self) -> dict[str, BrokerPosition]: ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Submit; raises :class:`DuplicateOrderError` when ``client_order_id`` was used before, and
        :class:`OrderRefused` when the broker refuses this one order."""
        ...

    def cancel(self, order_id: str) -> None: ...

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client order id, whatever its status, or ``None``."""
        ...

    def orders_since(self, since: dt.datetime) -> list[BrokerOrder]:
        """Every order submitted after ``since`` (timezone-aware, exclusive), whatever its status, oldest first;
        the exit legs of a bracket or OTO entry come nested in its ``legs``, not as orders of their own."""
        ...
