"""A local paper broker on SQLite: market orders fill at the price of the (replayed) moment.

Cash, positions and orders live in one SQLite file, so state carries over between runs and several processes can
share it; ``client_order_id`` is a UNIQUE column, so a duplicated submission fails exactly as Alpaca's HTTP 422
does. The clock is the NYSE calendar at ``now`` (a fixed, replayed moment, or the wall clock when ``now`` is
``None``).

Fills go through the execution model the backtest uses (``strategies.execution``; the live cycle passes the
config's): the market's price at the moment, moved by the slippage, plus the commission and the regulatory fees
of a sell. The moment's price comes from bars of the strategy's ``bar``: with daily bars the close of its day
(the model's approximation of a 15:45 fill); with intraday bars the open of the bar in progress at the moment
(the bar that opens at a slot: what the backtest fills at), or the last bar's close when the data holds no bar
in progress yet. Built without ``execution`` it fills at the market's price with only ``commission``.

Orders submitted while the market is closed are accepted and stay open; they fill at the first moment the broker
is asked anything while the market is open (as a queued market order fills at the open).

Like Alpaca it refuses an order it cannot take with :class:`~brokers.base.OrderRefused` and keeps no record of
it: a symbol it has no price for, a buy beyond the buying power (cash minus what open buys reserve at the
moment's price; a sale's proceeds count once it fills), a sell beyond the shares available (held minus those
held for open sells, ``qty_available``), a ``client_order_id`` over 48 characters.

Example:
    >>> import datetime as dt, tempfile, os
    >>> from marketdata.provider import SampleProvider
    >>> from brokers.base import OrderRequest
    >>> path = os.path.join(tempfile.mkdtemp(), "paper.sqlite")
    >>> now = dt.datetime(2022, 6, 1, 15, 45, tzinfo=NEW_YORK)
    >>> broker = PaperBroker(path, SampleProvider(), now=now, cash=10_000.0)
    >>> order = broker.submit(OrderRequest("KO", "buy", 10, client_order_id="doc-ko-buy"))
    >>> order.status, order.filled_qty, broker.positions()["KO"].qty
    ('filled', 10, 10)
    >>> round(broker.account().cash, 2) == round(10_000.0 - 10 * order.filled_avg_price, 2)
    True
    >>> broker.submit(OrderRequest("KO", "sell", 11, client_order_id="doc-ko-sell"))
    Traceback (most recent call last):
    ...
    brokers.base.OrderRefused: insufficient qty available for order (requested: 11, available: 10)
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pandas as pd

from brokers.base import (
    Account, BrokerError, BrokerOrder, BrokerPosition, Clock, DuplicateOrderError, OPEN_STATUSES, OrderRefused,
    OrderRequest, Session,
)
from brokers.calendar import NEW_YORK, MarketCalendar, as_aware
from marketdata.errors import DataError
from strategies.execution import Costs, Execution

MAX_CLIENT_ORDER_ID = 48  # as Alpaca

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY CHECK (id = 1), cash REAL NOT NULL,
    initial_cash REAL NOT NULL, created_at TEXT NOT NULL, account_id TEXT);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, qty INTEGER NOT NULL, avg_price REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, side TEXT NOT NULL,
    qty INTEGER NOT NULL, status TEXT NOT NULL, submitted_at TEXT NOT NULL, filled_at TEXT,
    filled_qty INTEGER NOT NULL DEFAULT 0, filled_avg_price REAL, stop_loss_price REAL, take_profit_price REAL,
    note TEXT, order_type TEXT NOT NULL DEFAULT 'market', parent_id TEXT, leg_price REAL, fee REAL);
"""
# Columns added after the first release: a database made before them gains them on open.
_LATER_COLUMNS = {"order_type": "TEXT NOT NULL DEFAULT 'market'", "parent_id": "TEXT", "leg_price": "REAL",
                  "fee": "REAL"}


class PaperBroker:
    """The :class:`brokers.base.Broker` interface over a SQLite file; prices come from a ``PriceProvider``."""

    name = "paper"

    def __init__(self, path: str | Path, prices, now: dt.datetime | None = None, *, cash: float = 100_000.0,
                 commission: float = 0.0, calendar: MarketCalendar | None = None,
                 execution: Execution | None = None, bar: str = "1d") -> None:
        if cash <= 0:
            raise ValueError(f"paper cash must be positive, got {cash}")
        if not 0 <= commission < 0.1:
            raise ValueError(f"paper commission must be a fraction in [0, 0.1), got {commission}")
        from marketdata.bars import parse_interval

        self.path = Path(path)
        self.prices = prices
        self.fixed_now = None if now is None else as_aware(now)
        self.execution = execution or Execution(costs=Costs(commission=commission, slippage_bps=0.0, regulatory="none"))
        self.costs = self.execution.costs
        self.commission = self.costs.commission
        try:
            self.bar = parse_interval(bar)
        except (DataError, ValueError) as exc:
            raise ValueError(f"paper broker bar: {exc}") from None
        self.market = calendar or MarketCalendar()
        self._marks_day: dt.date | None = None
        self._marks: dict[str, float] = {}  # daily marks of holdings read at _marks_day (see _daily_marks)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._read() as db:
                db.executescript(_SCHEMA)
                have = {row["name"] for row in db.execute("PRAGMA table_info(orders)")}
                for column, kind in _LATER_COLUMNS.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE orders ADD COLUMN {column} {kind}")
                if "account_id" not in {row["name"] for row in db.execute("PRAGMA table_info(account)")}:
                    db.execute("ALTER TABLE account ADD COLUMN account_id TEXT")
            with self._write() as db:
                db.execute("INSERT OR IGNORE INTO account (id, cash, initial_cash, created_at) VALUES (1, ?, ?, ?)",
                           (cash, cash, self.now().isoformat()))
                # a stable id of this account, made once with the file (an older file gains one on open)
                db.execute("UPDATE account SET account_id = ? WHERE account_id IS NULL", (f"paper-{uuid.uuid4()}",))
                self.account_id = db.execute("SELECT account_id FROM account").fetchone()["account_id"]
        except (OSError, sqlite3.Error) as exc:
            raise BrokerError(f"cannot open the paper broker database {self.path}: {exc}") from None

    # -- plumbing ------------------------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.fixed_now or dt.datetime.now(dt.timezone.utc)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: safe across threads and processes; the timeout waits out writers.
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # take the write lock before reading, so check-then-write is atomic
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def price(self, symbol: str) -> float:
        """The market's price of ``symbol`` at ``now`` (before slippage): with daily bars the last close up to
        ``now``'s New York date; with intraday bars the open of the bar in progress at ``now``, else the close of
        the last bar complete by then."""
        now = self.now()
        if not self.bar.intraday:
            day = now.astimezone(NEW_YORK).date()
            try:
                closes = self.prices.history([symbol], end=day, bars=1).closes[symbol].dropna()
            except DataError as exc:
                raise BrokerError(f"no price for {symbol}: {exc}") from None
            if closes.empty:
                raise BrokerError(f"no price for {symbol} up to {day}")
            return float(closes.iloc[-1])
        try:  # the bars complete one bar from now: the last is the bar in progress now, if the data has it
            data = self.prices.history([symbol], end=now + self.bar.length, bars=2, interval=self.bar.name)
        except DataError as exc:
            raise BrokerError(f"no price for {symbol}: {exc}") from None
        closes = data.closes[symbol]
        wall = pd.Timestamp(now.astimezone(NEW_YORK).replace(tzinfo=None))
        for stamp in reversed(closes.index):
            if stamp <= wall < stamp + self.bar.length and data.opens is not None:
                value = data.opens[symbol].get(stamp)
                if value is not None and value == value and value > 0:
                    return float(value)  # the bar in progress: its open is the price of its start
            if stamp + self.bar.length <= wall:
                value = closes.get(stamp)
                if value == value and value > 0:
                    return float(value)
        raise BrokerError(f"no {self.bar.name} price for {symbol} at {wall}")

    def _daily_marks(self, symbols: list[str]) -> dict[str, float]:
        """The daily marks of ``symbols`` at ``now`` from one read of the data (not one per position), remembered
        for ``now``'s date, so a cycle's two account reads price its holdings once; a symbol the batch cannot price
        (no close on the batch's last date) is left out and priced by :meth:`mark`, which says why.

        Each value is the one :meth:`price` gives: the batch's last row is its newest date, so a symbol with a close
        there has no later one."""
        day = self.now().astimezone(NEW_YORK).date()
        if self._marks_day != day:
            self._marks_day, self._marks = day, {}
        wanted = sorted({s for s in symbols if s not in self._marks})
        if wanted:
            try:
                last = self.prices.history(wanted, end=day, bars=1, strict=False).closes.iloc[-1]
            except (DataError, IndexError):
                last = pd.Series(dtype="float64")
            for symbol in wanted:
                value = last.get(symbol)
                if value is not None and value == value:
                    self._marks[symbol] = float(value)
        return {s: self._marks[s] for s in symbols if s in self._marks}

    def mark(self, symbol: str) -> float:
        """The price positions are valued at: the last close complete at ``now`` (what the strategy and the
        backtest's equity see at a slot; with daily bars the same as :meth:`price`)."""
        if not self.bar.intraday:
            return self.price(symbol)
        try:
            closes = self.prices.history([symbol], end=self.now(), bars=1, interval=self.bar.name).closes[symbol]
        except DataError as exc:
            raise BrokerError(f"no price for {symbol}: {exc}") from None
        closes = closes.dropna()
        if closes.empty:
            raise BrokerError(f"no {self.bar.name} price for {symbol} up to {self.now()}")
        return float(closes.iloc[-1])

    # -- the Broker interface ------------------------------------------------------------------------------------

    def clock(self) -> Clock:
        return self.market.clock(self.now())

    def calendar(self, start: dt.date, end: dt.date) -> list[Session]:
        return self.market.sessions(start, end)

    def account(self) -> Account:
        self._settle()
        with self._read() as db:  # one read transaction, so cash and positions agree
            db.execute("BEGIN")
            cash = float(db.execute("SELECT cash FROM account").fetchone()["cash"])
            held = db.execute("SELECT symbol, qty, avg_price FROM positions").fetchall()
            db.execute("COMMIT")
        marks = self._daily_marks([row["symbol"] for row in held]) if not self.bar.intraday else {}
        value = 0.0
        for row in held:
            try:
                mark = marks[row["symbol"]] if row["symbol"] in marks else self.mark(row["symbol"])
                value += row["qty"] * mark
            except BrokerError:
                value += row["qty"] * row["avg_price"]
        with self._read() as db:
            reserved = self._reserved_for_buys(db)
        return Account(cash=cash, buying_power=max(0.0, cash - reserved), equity=cash + value, id=self.account_id)

    def positions(self) -> dict[str, BrokerPosition]:
        self._settle()
        with self._read() as db:
            rows = db.execute("SELECT symbol, qty, avg_price FROM positions WHERE qty > 0 ORDER BY symbol").fetchall()
            held = {r["symbol"]: self._held_for_sells(db, r["symbol"]) for r in rows}
        return {r["symbol"]: BrokerPosition(r["symbol"], int(r["qty"]), float(r["avg_price"]),
                                            qty_available=int(r["qty"]) - held[r["symbol"]]) for r in rows}

    def orders_since(self, since: dt.datetime) -> list[BrokerOrder]:
        """Every order submitted after ``since`` (exclusive), whatever its status, oldest first; a bracket entry
        carries its exit legs once it has filled (they are opened then, as Alpaca's are)."""
        if since.tzinfo is None:
            raise BrokerError("orders_since needs a timezone-aware time")
        self._settle()
        return [o for o in self.orders() if o.submitted_at is not None and o.submitted_at > since]

    def open_orders(self) -> list[BrokerOrder]:
        self._settle()
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM orders WHERE status IN ({_placeholders(OPEN_STATUSES)}) "
                              "ORDER BY submitted_at", tuple(OPEN_STATUSES)).fetchall()
            return [_with_legs(db, r) for r in rows]

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
            return None if row is None else _with_legs(db, row)

    def orders(self) -> list[BrokerOrder]:
        """Every order ever submitted, oldest first (not part of the Broker interface; for tests and reports).
        A bracket entry carries its exit legs (``legs``), as Alpaca nests them; the legs are listed too."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM orders ORDER BY submitted_at, rowid").fetchall()
            return [_with_legs(db, r) for r in rows]

    def submit(self, request: OrderRequest) -> BrokerOrder:
        """Submit a market order; :class:`DuplicateOrderError` for a used id, :class:`OrderRefused` for an order
        the broker cannot take (nothing is recorded then, as at Alpaca)."""
        if request.side not in ("buy", "sell"):
            raise BrokerError(f"side must be buy or sell, got {request.side!r}")
        if int(request.qty) != request.qty or request.qty < 1:
            raise BrokerError(f"qty must be a whole number of shares >= 1, got {request.qty}")
        if not request.client_order_id or len(request.client_order_id) > MAX_CLIENT_ORDER_ID:
            raise OrderRefused(f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters")
        self._settle()
        now = self.now()
        is_open = self.market.clock(now).is_open
        try:
            price = self.price(request.symbol)  # also while closed: an unknown symbol is refused at once
        except BrokerError as exc:
            raise OrderRefused(str(exc)) from None
        qty = int(request.qty)
        with self._write() as db:
            taken = db.execute("SELECT 1 FROM orders WHERE client_order_id = ?", (request.client_order_id,))
            if taken.fetchone():
                raise DuplicateOrderError(f"client_order_id {request.client_order_id} was used before")
            if request.side == "buy":
                cash = float(db.execute("SELECT cash FROM account").fetchone()["cash"])
                power = cash - self._reserved_for_buys(db)
                need = self.costs.buy_cost(qty, price)
                if need > power + 1e-9:
                    raise OrderRefused(f"insufficient buying power: {need:.2f} needed, {max(power, 0.0):.2f} available")
            else:
                row = db.execute("SELECT qty FROM positions WHERE symbol = ?", (request.symbol,)).fetchone()
                available = (int(row["qty"]) if row else 0) - self._held_for_sells(db, request.symbol)
                if qty > available:
                    raise OrderRefused(f"insufficient qty available for order (requested: {qty}, "
                                       f"available: {available})")
            order_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO orders (id, client_order_id, symbol, side, qty, status, submitted_at, stop_loss_price,"
                " take_profit_price) VALUES (?, ?, ?, ?, ?, 'accepted', ?, ?, ?)",
                (order_id, request.client_order_id, request.symbol, request.side, qty,
                 now.astimezone(dt.timezone.utc).isoformat(), request.stop_loss_price, request.take_profit_price),
            )
            if is_open:
                self._fill(db, order_id, price, now)
            row = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        return _order(row)

    def cancel(self, order_id: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()
            if row is None:
                raise BrokerError(f"no order {order_id}")
            if row["status"] not in OPEN_STATUSES:
                raise BrokerError(f"order {order_id} is {row['status']}, not open")
            db.execute("UPDATE orders SET status = 'canceled' WHERE id = ?", (order_id,))

    # -- fills ---------------------------------------------------------------------------------------------------

    def _fill(self, db: sqlite3.Connection, order_id: str, market: float, now: dt.datetime) -> None:
        """Fill one open order at the market's price ``market`` through the execution model (slippage, fees)
        inside the caller's transaction, or reject it (cash, holdings)."""
        order = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        qty, symbol = int(order["qty"]), order["symbol"]
        cash = float(db.execute("SELECT cash FROM account").fetchone()["cash"])
        held = db.execute("SELECT qty, avg_price FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        held_qty = int(held["qty"]) if held else 0
        price = self.costs.fill_price(order["side"], market)
        value = qty * price
        fee = self.costs.fees(order["side"], qty, price, now.astimezone(NEW_YORK).date())
        if order["side"] == "buy":
            if value + fee > cash + 1e-9:
                return self._reject(db, order_id, f"insufficient cash: {value + fee:.2f} needed, {cash:.2f} held")
            new_qty = held_qty + qty
            avg = ((held_qty * float(held["avg_price"])) if held else 0.0) + value
            db.execute("INSERT INTO positions (symbol, qty, avg_price) VALUES (?, ?, ?) ON CONFLICT(symbol) "
                       "DO UPDATE SET qty = excluded.qty, avg_price = excluded.avg_price", (symbol, new_qty, avg / new_qty))
            cash -= value + fee
        else:
            if qty > held_qty:
                return self._reject(db, order_id, f"cannot sell {qty} {symbol}: {held_qty} held")
            if qty == held_qty:
                db.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))
            else:
                db.execute("UPDATE positions SET qty = ? WHERE symbol = ?", (held_qty - qty, symbol))
            cash += value - fee
        db.execute("UPDATE account SET cash = ?", (cash,))
        db.execute("UPDATE orders SET status = 'filled', filled_qty = qty, filled_avg_price = ?, filled_at = ?, "
                   "fee = ? WHERE id = ?", (price, now.astimezone(dt.timezone.utc).isoformat(), fee, order_id))
        if order["side"] == "buy":
            self._open_legs(db, order, now)
        elif order["parent_id"] is not None:  # one exit leg filled: its sibling is cancelled (one-cancels-other)
            db.execute("UPDATE orders SET status = 'canceled' WHERE parent_id = ? AND id != ? AND status = 'new'",
                       (order["parent_id"], order_id))

    @staticmethod
    def _open_legs(db: sqlite3.Connection, parent: sqlite3.Row, now: dt.datetime) -> None:
        """A filled bracket entry opens its exit legs, as Alpaca's do: a stop and a limit sell of the same qty."""
        for kind, price in (("stop", parent["stop_loss_price"]), ("limit", parent["take_profit_price"])):
            if price is None:
                continue
            db.execute(
                "INSERT INTO orders (id, client_order_id, symbol, side, qty, status, submitted_at, order_type,"
                " parent_id, leg_price) VALUES (?, ?, ?, 'sell', ?, 'new', ?, ?, ?, ?)",
                (str(uuid.uuid4()), str(uuid.uuid4()), parent["symbol"], int(parent["qty"]),
                 now.astimezone(dt.timezone.utc).isoformat(), kind, parent["id"], float(price)))

    def _reserved_for_buys(self, db: sqlite3.Connection) -> float:
        """What open buys hold of the cash: their quantity at the moment's price (Alpaca reserves market buys)."""
        total = 0.0
        rows = db.execute(f"SELECT symbol, qty - filled_qty AS left FROM orders WHERE side = 'buy' AND status IN "
                          f"({_placeholders(OPEN_STATUSES)})", tuple(OPEN_STATUSES)).fetchall()
        for row in rows:
            try:
                total += self.costs.buy_cost(row["left"], self.price(row["symbol"]))
            except BrokerError:
                pass  # unpriced now: it cannot fill either
        return total

    @staticmethod
    def _held_for_sells(db: sqlite3.Connection, symbol: str) -> int:
        row = db.execute(f"SELECT COALESCE(SUM(qty - filled_qty), 0) AS held FROM orders WHERE symbol = ? AND "
                         f"side = 'sell' AND status IN ({_placeholders(OPEN_STATUSES)})",
                         (symbol, *OPEN_STATUSES)).fetchone()
        return int(row["held"])

    @staticmethod
    def _reject(db: sqlite3.Connection, order_id: str, note: str) -> None:
        db.execute("UPDATE orders SET status = 'rejected', note = ? WHERE id = ?", (note, order_id))

    def _settle(self) -> None:
        """Fill orders queued while the market was closed, if it is open now."""
        now = self.now()
        if not self.market.clock(now).is_open:
            return
        stamp = now.astimezone(dt.timezone.utc).isoformat()
        with self._write() as db:
            queued = db.execute("SELECT id, symbol FROM orders WHERE status = 'accepted' AND submitted_at < ? "
                                "ORDER BY submitted_at, rowid", (stamp,)).fetchall()
        for row in queued:
            price = self.price(row["symbol"])
            with self._write() as db:
                still = db.execute("SELECT status FROM orders WHERE id = ?", (row["id"],)).fetchone()
                if still["status"] == "accepted":
                    self._fill(db, row["id"], price, now)
        self._trigger_legs(now)

    def _trigger_legs(self, now: dt.datetime) -> None:
        """Exit legs at the price now: a stop at or below it, a limit at or above it, fill there (slipped, as
        the closes-only backtest's exit sells are).

        Like the backtest on closes-only data, the paper broker sees one price per cycle, so a leg fills at that
        price, not inside the bar.
        """
        with self._read() as db:
            legs = db.execute("SELECT id, symbol, order_type, leg_price FROM orders WHERE status = 'new' "
                              "AND parent_id IS NOT NULL ORDER BY submitted_at, rowid").fetchall()
        for leg in legs:
            try:
                price = self.price(leg["symbol"])
            except BrokerError:
                continue
            hit = price <= leg["leg_price"] if leg["order_type"] == "stop" else price >= leg["leg_price"]
            if not hit:
                continue
            with self._write() as db:
                still = db.execute("SELECT status FROM orders WHERE id = ?", (leg["id"],)).fetchone()
                if still["status"] == "new":
                    self._fill(db, leg["id"], price, now)


def _placeholders(values) -> str:
    return ", ".join("?" for _ in values)


def _with_legs(db: sqlite3.Connection, row: sqlite3.Row) -> BrokerOrder:
    """The order of ``row`` with its exit legs (a filled bracket entry's stop and limit sells)."""
    order = _order(row)
    if row["parent_id"] is not None or row["side"] != "buy":
        return order
    legs = db.execute("SELECT * FROM orders WHERE parent_id = ? ORDER BY rowid", (row["id"],)).fetchall()
    return replace(order, legs=tuple(_order(leg) for leg in legs)) if legs else order


def _order(row: sqlite3.Row) -> BrokerOrder:
    return BrokerOrder(
        id=row["id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=row["side"],
        qty=int(row["qty"]),
        status=row["status"],
        submitted_at=dt.datetime.fromisoformat(row["submitted_at"]),
        filled_qty=int(row["filled_qty"]),
        filled_avg_price=row["filled_avg_price"],
        order_type=row["order_type"] if "order_type" in row.keys() else "market",
        # the fee the fill charged the cash (strategies.execution); none before a fill
        fee=float(row["fee"]) if "fee" in row.keys() and row["fee"] is not None and row["filled_qty"] else None,
    )
