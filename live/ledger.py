"""The strategy's own book: positions built only from the fills of orders it placed.

A broker account may hold shares bought by hand, or by another strategy (a variant with another
``STRATEGY_NAME``). The cycle must never sell those, nor cancel orders it did not place. So each strategy keeps a
ledger of its orders, recognised by their ``client_order_id`` prefix (:func:`live.orders.is_ours`), plus the exit
legs of its own bracket parents (the broker names those, so they are known only as legs of our parents). Its
positions are the sum of those fills, and the cycle is given only them, capped at what the broker really holds:
``min(ledger, broker)``. Every difference from the broker is reported.

Write-ahead: the orders a cycle is about to send are written to the ledger (``planned``) before they are sent, so
a cycle killed between sending and recording leaves the next one a name to look up (``order_by_client_id``).

The ledger lives with the journal: ``<journal dir>/ledger/<strategy>.json`` (temp file, fsync, rename) or
``s3://bucket/prefix/ledger/<strategy>.json`` (written with ``If-Match`` on the ETag read, so a cycle that lost
its lease cannot overwrite a newer ledger).

Example:
    >>> import tempfile
    >>> from brokers.base import BrokerOrder, BrokerPosition
    >>> ledger = open_ledger(tempfile.mkdtemp() + "/journal.jsonl", "pt")
    >>> ledger.record(BrokerOrder("1", "pt-20220601-s63-KO-buy", "KO", "buy", 10, "filled", filled_qty=10,
    ...                           filled_avg_price=60.0))
    >>> view = ledger.against({"KO": BrokerPosition("KO", 25, 58.0), "AAPL": BrokerPosition("AAPL", 500, 150.0)})
    >>> {s: p.qty for s, p in view.positions.items()}, view.foreign
    ({'KO': 10}, {'AAPL': 500, 'KO': 15})
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from brokers.base import OPEN_STATUSES, BrokerOrder, BrokerPosition, OrderRequest
from live.journal import JournalHome, safe_name
from live.orders import is_ours

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
    def __init__(self, strategy: str, store: "_Store") -> None:
        self.strategy = strategy
        self.store = store
        self.entries: dict[str, dict[str, Any]] = {}
        self.synced_until: dt.datetime | None = None
        self.new_fills: list[dict] = []
        self.dirty = False

    # -- persistence -------------------------------------------------------------------------------------------
    def load(self) -> "Ledger":
        data = self.store.read()
        if data is not None:
            if data.get("strategy") != self.strategy:
                raise LedgerError(f"ledger {self.store.where} belongs to {data.get('strategy')!r}, "
                                  f"not {self.strategy!r}")
            self.entries = dict(data.get("orders", {}))
            self.synced_until = dt.datetime.fromisoformat(data["synced_until"]) if data.get("synced_until") else None
        return self

    def save(self) -> str:
        body = {"strategy": self.strategy, "version": 1,
                "synced_until": self.synced_until.isoformat() if self.synced_until else None,
                "orders": self.entries}
        self.store.write(json.dumps(body, sort_keys=True, indent=1))
        self.dirty = False
        return self.store.where

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
                 "legs": sorted({*old.get("legs", []), *(leg.client_order_id or leg.id for leg in order.legs)})}
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
            if is_ours(self.strategy, order.client_order_id):
                self.record(order)
        for key, entry in list(self.entries.items()):
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


class _Store:
    where: str

    def read(self) -> dict | None: ...

    def write(self, text: str) -> None: ...


class _FileStore(_Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from None

    def write(self, text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a crash
            finally:
                os.close(folder)
        except OSError as exc:
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from None


class _S3Store(_Store):
    def __init__(self, bucket: str, key: str) -> None:
        self.bucket, self.key = bucket, key
        self.where = f"s3://{bucket}/{key}"
        self.etag: str | None = None
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def read(self) -> dict | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
            self.etag = got["ETag"]
            return json.loads(got["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                self.etag = None
                return None
            raise LedgerError(f"cannot read the ledger {self.where}: {exc}") from None
        except (ValueError, BotoCoreError) as exc:
            raise LedgerError(f"cannot read the ledger {self.where}: {exc}") from None

    def write(self, text: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}
        try:
            self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=text.encode(),
                                               ContentType="application/json", **condition)["ETag"]
        except (ClientError, BotoCoreError) as exc:
            raise LedgerError(f"cannot write the ledger {self.where}: {exc}") from None


def open_ledger(journal: str, strategy: str) -> Ledger:
    """Load (or start) the ledger of ``strategy`` next to the journal ``journal``."""
    home = JournalHome.of(journal)
    name = safe_name(strategy) + ".json"
    if home.bucket:
        store: _Store = _S3Store(home.bucket, home.key("ledger", name))
    else:
        store = _FileStore(home.folder / "ledger" / name)
    return Ledger(strategy, store).load()
