"""The strategy's own book: positions built only from the fills of orders it placed, in one broker account.

A broker account may hold shares bought by hand, or by another strategy (a variant with another
``STRATEGY_NAME``). The cycle must never sell those, nor cancel orders it did not place. So each strategy keeps a
ledger of its orders, recognised by ids that parse exactly under the grammar of :mod:`live.orders` (with their
check part), plus the exit legs of its own bracket parents (the broker names those, so they are known only as
legs of our parents). Its positions are the sum of those fills, and the cycle is given only them, capped at what
the broker really holds: ``min(ledger, broker)``. Every difference from the broker is reported.

Bound to one account: a new ledger records the broker (``paper``, ``alpaca-paper``, ``alpaca-live``) and its
account id (:meth:`Ledger.bind`); a cycle on any other account refuses before it trades or cancels anything, and
the user starts a new ledger explicitly (``python -m live ledger new``, :func:`new_ledger`). A filled entry the
bound broker has not itself reported is looked up by its client id before anything is sold against it; an entry
the broker does not know is an error, never a position.

Write-ahead: the orders a cycle is about to send are written to the ledger (``planned``) before they are sent, so
a cycle killed between sending and recording leaves the next one a name to look up (``order_by_client_id``).

The ledger lives with the journal, in its store (:mod:`live.store`): ``<journal dir>/ledger/<strategy>.json`` or
``s3://bucket/prefix/ledger/<strategy>.json``, replaced only on the version it read; and every write is fenced by
the cycle's lease (``Ledger.fence``), so a cycle that lost its lease writes nothing.

Example:
    >>> import tempfile
    >>> from brokers.base import BrokerOrder, BrokerPosition
    >>> ledger = open_ledger(tempfile.mkdtemp() + "/journal.jsonl", "pt")
    >>> ledger.record(BrokerOrder("1", "pt-20220601s63-KO-b8525a9", "KO", "buy", 10, "filled", filled_qty=10,
    ...                           filled_avg_price=60.0))
    >>> view = ledger.against({"KO": BrokerPosition("KO", 25, 58.0), "AAPL": BrokerPosition("AAPL", 500, 150.0)})
    >>> {s: p.qty for s, p in view.positions.items()}, view.foreign
    ({'KO': 10}, {'AAPL': 500, 'KO': 15})
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from brokers.base import OPEN_STATUSES, BrokerOrder, BrokerPosition, OrderRequest
from live.journal import safe_name
from live.orders import is_ours
from live.store import Conflict, Store, StoreError, open_store

FIRST_SYNC = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # a new ledger looks for our orders since then
SYNC_MARGIN = dt.timedelta(days=1)  # look back a little before the last sync: clocks and listings lag


class LedgerError(Exception):
    """The ledger could not be read or written."""


@dataclass
class LedgerView:
    """The strategy's positions against the broker's, for one cycle."""

    positions: dict[str, BrokerPosition]        # what the strategy may trade: min(ledger, broker)
    ledger: dict[str, int]                       # the ledger's own quantities
    shortfalls: list[dict] = field(default_factory=list)  # the broker holds less than the ledger says
    foreign: dict[str, int] = field(default_factory=dict)  # shares held by others (hand trades, other strategies)

    def describe(self) -> dict[str, Any]:
        return {"positions": {s: p.qty for s, p in self.positions.items()}, "ledger": self.ledger,
                "shortfalls": self.shortfalls, "foreign_positions": self.foreign}


class Ledger:
    def __init__(self, strategy: str, store: "_Record") -> None:
        self.strategy = strategy
        self.store = store
        self.entries: dict[str, dict[str, Any]] = {}
        self.synced_until: dt.datetime | None = None
        self.new_fills: list[dict] = []
        self.dirty = False
        self.account: dict[str, str] | None = None  # {"broker": "alpaca-live", "id": ...}: the one it trades
        self.fence: Callable[[], None] | None = None  # proves the cycle's lease before every write (live.lease)

    # -- persistence -------------------------------------------------------------------------------------------
    def load(self) -> "Ledger":
        data = self.store.read()
        if data is not None:
            if data.get("strategy") != self.strategy:
                raise LedgerError(f"ledger {self.store.where} belongs to {data.get('strategy')!r}, "
                                  f"not {self.strategy!r}")
            self.entries = dict(data.get("orders", {}))
            self.account = data.get("account")
            self.synced_until = dt.datetime.fromisoformat(data["synced_until"]) if data.get("synced_until") else None
        return self

    def save(self) -> str:
        if self.fence is not None:
            self.fence()  # a cycle that lost its lease writes nothing: the ledger is the new holder's now
        body = {"strategy": self.strategy, "version": 1, "account": self.account,
                "synced_until": self.synced_until.isoformat() if self.synced_until else None,
                "orders": self.entries}
        self.store.write(json.dumps(body, sort_keys=True, indent=1))
        self.dirty = False
        return self.store.where

    # -- whose account -----------------------------------------------------------------------------------------
    def bind(self, broker: str, account_id: str | None, *, journal: str = "JOURNAL") -> None:
        """Bind a new ledger to the broker account it trades, or refuse an account it is not bound to.

        A ledger holds what the strategy bought *in one account*: used with another (paper first, then live,
        with the same journal) it would claim, and sell, shares the user holds there. Raises
        :class:`LedgerError`, saying how to start a new ledger, before the cycle trades or cancels anything."""
        if not account_id:
            raise LedgerError(f"the broker {broker} names no account id: the ledger cannot be bound to an account")
        mine = {"broker": broker, "id": str(account_id)}
        if self.account is None:
            self.account = mine
            self.dirty = True
            return
        if (self.account.get("broker"), self.account.get("id")) != (mine["broker"], mine["id"]):
            raise LedgerError(
                f"ledger {self.store.where} belongs to {self.account.get('broker')} account "
                f"{self.account.get('id')}, not to this {broker} account {account_id}: nothing traded or cancelled. "
                f"To trade this account start a new ledger (the old one is kept): python -m live ledger new "
                f"--journal {journal} --strategy {self.strategy}")

    # -- what we placed ----------------------------------------------------------------------------------------
    def plan(self, requests: list[OrderRequest]) -> None:
        """Write-ahead: name the orders about to be sent (they count for nothing until a fill is seen)."""
        for r in requests:
            if r.client_order_id not in self.entries:
                self.entries[r.client_order_id] = {
                    "client_order_id": r.client_order_id, "id": None, "symbol": r.symbol, "side": r.side,
                    "qty": r.qty, "filled_qty": 0, "filled_avg_price": None, "status": "planned", "parent": None,
                    "bracket": r.stop_loss_price is not None or r.take_profit_price is not None}
                self.dirty = True

    def record(self, order: BrokerOrder, parent: str | None = None) -> None:
        """Take in the broker's view of one of our orders (and its legs); notes new fills."""
        key = order.client_order_id or order.id
        old = self.entries.get(key, {})
        before = int(old.get("filled_qty") or 0)
        entry = {**old, "client_order_id": key, "id": order.id, "symbol": order.symbol, "side": order.side,
                 "qty": order.qty, "filled_qty": int(order.filled_qty or 0),
                 "filled_avg_price": order.filled_avg_price, "status": order.status,
                 "parent": parent if parent is not None else old.get("parent"),
                 "bracket": bool(old.get("bracket")) or bool(order.legs),
                 "legs": sorted({*old.get("legs", []), *(leg.client_order_id or leg.id for leg in order.legs)}),
                 "verified": self.account is not None or bool(old.get("verified"))}  # the bound broker said so
        if entry["bracket"] and not order.is_open and not entry["legs"]:
            entry["bracket"] = False  # the broker shows no legs (the paper broker keeps none): stop asking
        if entry != old:
            self.entries[key] = entry
            self.dirty = True
        if entry["filled_qty"] > before:
            self.new_fills.append({"symbol": order.symbol, "side": order.side, "qty": entry["filled_qty"] - before,
                                   "price": order.filled_avg_price, "client_order_id": key})
        for leg in order.legs:
            self.record(leg, parent=key)

    def sync(self, broker, now: dt.datetime) -> None:
        """Bring the ledger up to the broker: find orders of ours it does not know, refresh the live ones."""
        self.new_fills = []
        since = FIRST_SYNC if self.synced_until is None else self.synced_until - SYNC_MARGIN
        for order in _orders_since(broker, since) or ():
            if is_ours(self.strategy, order.client_order_id, order.symbol, order.side):
                self.record(order)
        for key, entry in list(self.entries.items()):
            if entry.get("parent") is None and int(entry.get("filled_qty") or 0) and not entry.get("verified"):
                self._verify(broker, key, entry)
            if entry.get("parent") is None and self._live(entry):
                found = broker.order_by_client_id(key)
                if found is None:
                    if entry["status"] == "planned":  # never reached the broker (the cycle died first)
                        del self.entries[key]
                        self.dirty = True
                    continue
                self.record(found)
        self.synced_until = now.astimezone(dt.timezone.utc)
        self.dirty = True

    def _verify(self, broker, key: str, entry: dict) -> None:
        """A fill the ledger holds but the bound broker has not confirmed (an older ledger, a hand edit): looked
        up by its client id before anything is sold against it; unknown there, it is an error, never a position."""
        found = broker.order_by_client_id(key)
        if found is None:
            raise LedgerError(
                f"ledger entry {key} ({entry.get('side')} {entry.get('filled_qty')} {entry.get('symbol')} filled) is "
                f"not an order {getattr(broker, 'name', 'the broker')} knows: nothing traded or cancelled. If this "
                f"ledger belongs to another account, start a new one: python -m live ledger new --journal JOURNAL "
                f"--strategy {self.strategy}")
        self.record(found)

    def _live(self, entry: dict) -> bool:
        if entry["status"] == "planned" or entry["status"] in OPEN_STATUSES:
            return True
        legs = [self.entries.get(k) for k in entry.get("legs", [])]
        return bool(entry.get("bracket")) and (not legs or any(x is None or x["status"] in OPEN_STATUSES for x in legs))

    def leg_ids(self) -> set[str]:
        """Broker ids of the exit legs of our own bracket parents: the only sell limits/stops that are ours."""
        return {e["id"] for e in self.entries.values() if e.get("parent") and e.get("id")}

    # -- positions ---------------------------------------------------------------------------------------------
    def quantities(self) -> dict[str, int]:
        qty: dict[str, int] = {}
        for e in self.entries.values():
            sign = 1 if e["side"] == "buy" else -1
            qty[e["symbol"]] = qty.get(e["symbol"], 0) + sign * int(e.get("filled_qty") or 0)
        return {s: q for s, q in sorted(qty.items()) if q != 0}

    def _costs(self) -> dict[str, float]:
        paid: dict[str, tuple[int, float]] = {}
        for e in self.entries.values():
            if e["side"] == "buy" and e.get("filled_qty") and e.get("filled_avg_price") is not None:
                q, v = paid.get(e["symbol"], (0, 0.0))
                paid[e["symbol"]] = (q + int(e["filled_qty"]), v + int(e["filled_qty"]) * float(e["filled_avg_price"]))
        return {s: v / q for s, (q, v) in paid.items() if q}

    def against(self, broker_positions: Mapping[str, BrokerPosition]) -> LedgerView:
        """The strategy's positions, capped by the broker's, and every difference between the two."""
        ours = self.quantities()
        costs = self._costs()
        view = LedgerView(positions={}, ledger=ours)
        for symbol in sorted(set(ours) | set(broker_positions)):
            mine = ours.get(symbol, 0)
            held = broker_positions.get(symbol)
            theirs = held.qty if held else 0
            if mine > theirs:
                view.shortfalls.append({"symbol": symbol, "ledger": mine, "broker": theirs})
            elif theirs > max(mine, 0):
                view.foreign[symbol] = theirs - max(mine, 0)
            qty = min(mine, theirs)
            if qty > 0:
                available = None if held.qty_available is None else min(qty, held.qty_available)
                view.positions[symbol] = BrokerPosition(symbol, qty, costs.get(symbol, held.avg_entry_price),
                                                        qty_available=available)
        return view


def _orders_since(broker, since: dt.datetime) -> list[BrokerOrder] | None:
    """Every order submitted since ``since``, where the broker can list them (``orders_since``, or the paper
    broker's ``orders``); ``None`` otherwise (the write-ahead names are then the only way back)."""
    if hasattr(broker, "orders_since"):
        return list(broker.orders_since(since))
    if hasattr(broker, "orders"):
        return [o for o in broker.orders() if o.submitted_at is None or o.submitted_at >= since]
    return None


class _Record:
    """The ledger's one object in the journal's store, replaced only on the version last read or written."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key
        self.where = store.where(key)
        self.version: str | None = None

    def read(self) -> dict | None:
        try:
            got = self.store.read(self.key)
        except StoreError as exc:
            raise LedgerError(f"cannot read the ledger: {exc}") from None
        if got is None:
            self.version = None
            return None
        self.version = got.version
        try:
            return json.loads(got.data)
        except ValueError as exc:
            raise LedgerError(f"cannot read the ledger {self.where}: {exc}") from None

    def write(self, text: str) -> None:
        try:
            if self.version is None:
                self.version = self.store.write_if_absent(self.key, text.encode())
            else:
                self.version = self.store.write_if_unchanged(self.key, text.encode(), self.version)
        except Conflict:
            raise LedgerError(f"the ledger {self.where} was changed by another cycle since this one read it: "
                              "not overwritten") from None
        except StoreError as exc:
            raise LedgerError(f"cannot write the ledger: {exc}") from None


def ledger_key(strategy: str) -> str:
    return f"ledger/{safe_name(strategy)}.json"


def open_ledger(journal: str, strategy: str) -> Ledger:
    """Load (or start) the ledger of ``strategy`` next to the journal ``journal``."""
    store, prefix = open_store(journal)
    return Ledger(strategy, _Record(store, prefix + ledger_key(strategy))).load()


def new_ledger(journal: str, strategy: str, *, now: dt.datetime | None = None) -> str | None:
    """Start a new, empty ledger for ``strategy``: the current one is kept, renamed
    ``ledger/<strategy>.<UTC time>.json`` (its history stays readable), and the next cycle binds the new one to
    the account it trades. Returns where the old one went, or ``None`` if there was none.

    >>> import tempfile
    >>> journal = tempfile.mkdtemp() + "/journal.jsonl"
    >>> ledger = open_ledger(journal, "pt"); ledger.save() and None
    >>> new_ledger(journal, "pt", now=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)).endswith("pt.20240102T000000Z.json")
    True
    >>> open_ledger(journal, "pt").account is None
    True
    """
    store, prefix = open_store(journal)
    key = prefix + ledger_key(strategy)
    try:
        current = store.read(key)
        if current is None:
            return None
        stamp = f"{(now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
        aside = prefix + f"ledger/{safe_name(strategy)}.{stamp}.json"
        store.write_if_absent(aside, current.data)
        store.delete_if_unchanged(key, current.version)
    except Conflict as exc:
        raise LedgerError(f"the ledger changed while it was being set aside (a cycle is running?): {exc}") from None
    except StoreError as exc:
        raise LedgerError(f"cannot start a new ledger: {exc}") from None
    return store.where(aside)
