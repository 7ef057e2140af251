"""The Backtrader home of any :class:`~strategies.Strategy`: at every bar, decide on the closes seen so far.

History is read from Backtrader's own lines (``data.close.get``), which hold no row after the current bar, so the
decision cannot see the future by construction. What the strategy returns goes through the same rulebook as live
(``strategies.rules``): sells first, buys sized on the cash the broker has now (sale proceeds are not counted),
``max_positions`` and ``max_order_notional``, sized with the execution model's costs (``strategies.execution``).
Market orders fill as that model says: on daily bars at the decision bar's close (Backtrader's cheat-on-close,
the default) or, with ``fill="next-bar"``, at bar t+1's open (its close for closes-only data); on intraday bars at
the next bar's open. :class:`ModelBroker` and :class:`ModelCommission` apply its slippage and fees.

Stops: every buy with a stop-loss or take-profit carries exit prices, the backtest's stand-in for Alpaca's
broker-side bracket (and the paper broker's legs), armed from the entry's fill as a bracket is:
- with highs and lows in the data it is a Backtrader bracket: a Stop and a Limit leg that trigger inside the bar
  and fill at their price (at the open when the bar gaps through it). The legs are live from the entry's fill:
  an entry at a bar's open can be stopped by that same bar's low; an entry at a bar's close (cheat-on-close) is
  exposed from the next bar on, since nothing trades in its bar after the close;
- with closes only, the exit is checked on every close after the entry's fill (the paper broker checks its legs
  at every cycle's price the same way); a close beyond the price triggers a market sell that fills as any market
  order does, and the strategy decides that bar as if the holding were gone, as the live cycle would.
A strategy's own sell of a protected holding cancels its exits first, as the live cycle cancels a bracket's legs.

Intraday bars (``decide_at`` given): Backtrader walks every bar, but the strategy decides only at the bars that
complete at a slot of the cadence (a bar stamped 09:30 is complete at the 09:45 slot), on those bars and no
later one; its orders fill at the next bar's open (the bar starting at the slot). Decisions, equity and fills
are stamped with the slot moment, as the live cycle stamps them. Closes-only exits are checked at the slots,
as the paper broker checks its legs at every cycle.
"""

from __future__ import annotations

import array
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

import backtrader as bt
import numpy as np
import pandas as pd

from strategies.base import Decision, Position, Strategy, as_decision, decision_window, last_prices
from strategies.execution import Costs, Execution
from strategies.rules import Rules, plan_orders


@dataclass
class BacktestRecorder:
    """What the run leaves behind: equity per bar, executed orders, rejected orders, skips and every decision."""

    equity: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


EXIT_REASONS = {bt.Order.Stop: "stop_loss", bt.Order.Limit: "take_profit"}


class ModelBroker(bt.brokers.BackBroker):
    """Backtrader's broker with the execution model's two changes: bracket legs are armed the moment their entry
    fills (Backtrader activates them one bar later), and fees are dated by the bar the order fills on.

    Backtrader processes the pending orders in submission order within a bar, so the legs of an entry that filled
    at this bar's open are checked against this bar's high and low (a broker's bracket protects the position from
    its fill); an entry filled at the previous bar's close (cheat-on-close) meets its legs from this bar on.
    """

    fee_day: dt.date = dt.date(1970, 1, 1)

    def _bracketize(self, order, cancel=False):
        pref = getattr(order.parent, "ref", order.ref)
        if not cancel and order.ref == pref and order.status == order.Completed:
            children = self._pchildren[pref]
            children.popleft()  # the parent itself
            for child in children:
                child.activate()  # now, not at the next bar
            return
        super()._bracketize(order, cancel=cancel)

    def _execute(self, order, ago=None, price=None, cash=None, position=None, dtcoc=None):
        if dtcoc is not None:
            stamp = dtcoc  # cheat-on-close: the fill belongs to the bar the order was made on
        elif ago is None:
            stamp = order.created.dt  # the submission check
        else:
            stamp = order.data.datetime[0]
        self.fee_day = bt.num2date(stamp).date()
        return super()._execute(order, ago=ago, price=price, cash=cash, position=position, dtcoc=dtcoc)


class ModelCommission(bt.CommInfoBase):
    """The execution model's fees as Backtrader's commission: ``costs.fees`` of each order on its fill day."""

    params = (("costs", None), ("broker", None), ("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))

    def _getcommission(self, size, price, pseudoexec):
        costs: Costs = self.p.costs
        return costs.fees("sell" if size < 0 else "buy", abs(size), price, self.p.broker.fee_day)


def model_broker(execution: Execution, cash: float, *, intraday: bool) -> ModelBroker:
    """A broker that fills, slips and charges as ``execution`` says (daily bars: at the close unless next-bar).

    Slippage moves market and stop fills (a triggered stop is a market order) even beyond the bar's range, as a
    spread would; a take-profit limit fills at its price or better, so it is not slipped.
    """
    broker = ModelBroker(coc=execution.at_close(intraday), slip_perc=execution.costs.slip, slip_open=True,
                         slip_limit=False, slip_match=True, slip_out=True)
    broker.setcash(cash)
    broker.addcommissioninfo(ModelCommission(costs=execution.costs, broker=broker))
    return broker


class StrategyAdapter(bt.Strategy):
    """Backtrader adapter: ``user_strategy`` (a Strategy), ``rules``, the first trading day, a recorder, a bar callback."""

    params = (
        ("user_strategy", None),
        ("rules", None),
        ("start", None),
        ("recorder", None),
        ("on_bar", None),
        ("intrabar", False),
        ("decide_at", None),  # intraday: the bar starts whose completion is a slot (None: decide at every bar)
        ("bar_length", None),  # intraday: pd.Timedelta of one bar
        ("costs", None),  # strategies.execution.Costs: buys are sized so that slippage and fees fit the cash
        ("candidates", None),  # bool array, bars x feeds: the columns each decision sees besides holdings (None: all)
    )

    def __init__(self) -> None:
        self.strategy: Strategy = self.p.user_strategy
        self.rules: Rules = self.p.rules or Rules()
        self.recorder: BacktestRecorder = self.p.recorder or BacktestRecorder()
        self.first_day: dt.date | None = self.p.start
        self.on_bar: Callable[[], None] | None = self.p.on_bar
        self.by_name = {d._name: d for d in self.datas}
        self.dates: list[pd.Timestamp] = []
        self.window = decision_window(self.strategy)
        self.legs: dict[str, list[bt.Order]] = {}  # open bracket exit legs per symbol (data with highs and lows)
        self.exits: dict[str, tuple[float | None, float | None]] = {}  # closes-only exits: (stop, take) per symbol
        self.intrabar = bool(self.p.intrabar)
        self.decide_at: frozenset | None = self.p.decide_at
        self.bar_length: pd.Timedelta | None = self.p.bar_length
        # Each feed's close buffer: len(feed) is its first line's length, the close's (all lines move together)
        self._close_lines = [d.lines.close for d in self.datas]
        self.candidates: np.ndarray | None = self.p.candidates

    def prenext(self) -> None:  # feeds are aligned, but keep the calendar complete if one starts late
        self.next()

    def next(self) -> None:
        if self.decide_at is None:
            today = pd.Timestamp(self.datas[0].datetime.date(0))
            self.dates.append(today)
        else:
            stamp = pd.Timestamp(self.datas[0].datetime.datetime(0)).round("s")
            self.dates.append(stamp)
            if self.on_bar:
                self.on_bar()
            if stamp not in self.decide_at or (self.first_day is not None and stamp.date() < self.first_day):
                return
            self._decide(stamp + self.bar_length)
            return
        if self.on_bar:
            self.on_bar()
        if self.first_day is not None and today.date() < self.first_day:
            return
        self._decide(today)

    def _decide(self, today: pd.Timestamp) -> None:
        n = min(len(self.dates), self.window)
        # The broker's book as it stands, read without getposition's defaultdict adding an empty position per
        # feed: Backtrader values every position it holds, and an empty one on a missing close is NaN equity.
        book = self.broker.positions
        held = [book.get(d) or _FLAT for d in self.datas]
        if self.candidates is None:
            seen = range(len(self.datas))
        else:  # this bar's candidates and every holding, in feed order (strategies.Strategy.candidate_mask)
            row = self.candidates[len(self.dates) - 1]
            seen = [i for i, pos in enumerate(held) if row[i] or pos.size > 0]
        # One 2-D block instead of a dict of columns: pandas then builds no block per feed (same frame, same values).
        columns = [_floats(line.get(size=n)) if line.lencount >= n else np.full(n, np.nan)
                   for line in (self._close_lines[i] for i in seen)]
        closes = pd.DataFrame(np.column_stack(columns) if columns else np.empty((n, 0)),
                              index=pd.DatetimeIndex(self.dates[-n:]), columns=[self.datas[i]._name for i in seen])
        exiting = self._check_exits(today, closes.iloc[-1])
        positions = {}
        for d, pos in zip(self.datas, held):
            if pos.size > 0 and d._name not in exiting:
                positions[d._name] = Position(int(pos.size), float(pos.price))
        cash = float(self.broker.getcash())
        prices = last_prices(closes)  # read before decide(), as the live cycle reads them
        spendable = self.rules.spendable(cash, positions, prices)  # capital, as the live cycle caps it
        decision = as_decision(self.strategy.decide(closes, positions, spendable), self.strategy, closes, positions)
        self.recorder.decisions.append(decision)
        invested = sum(p.qty * prices.get(s, p.avg_price) for s, p in positions.items())
        value = self._book_value(closes, held)
        self.recorder.equity.append({"date": today, "equity": value, "cash": cash, "invested": invested})
        planned, notes = plan_orders(decision, positions, cash, prices, self.rules, costs=self.p.costs)
        self.recorder.skipped += [{"decision_date": today, "symbol": n.symbol, "side": n.side, "action": n.action,
                                   "reason": n.reason} for n in notes]
        for order in planned:
            data = self.by_name[order.symbol]
            info = dict(decision_date=today, reason=order.intent.reason)
            if order.side == "sell":
                for leg in self.legs.pop(order.symbol, []):
                    self.cancel(leg)
                self.exits.pop(order.symbol, None)
                self.sell(data=data, size=order.qty, exectype=bt.Order.Market).addinfo(**info)
            elif (order.stop_loss_price is None and order.take_profit_price is None) or not self.intrabar:
                self.buy(data=data, size=order.qty, exectype=bt.Order.Market).addinfo(
                    **info, exits=(order.stop_loss_price, order.take_profit_price))
            else:
                entry, stop, take = self.buy_bracket(
                    data=data, size=order.qty, exectype=bt.Order.Market,
                    stopprice=order.stop_loss_price, stopexec=None if order.stop_loss_price is None else bt.Order.Stop,
                    limitprice=order.take_profit_price,
                    limitexec=None if order.take_profit_price is None else bt.Order.Limit)
                entry.addinfo(**info)
                legs = [leg for leg in (stop, take) if leg is not None]
                for leg in legs:
                    leg.addinfo(decision_date=None, reason=EXIT_REASONS[leg.exectype])
                self.legs.setdefault(order.symbol, []).extend(legs)

    def _book_value(self, closes: pd.DataFrame, held: list) -> float:
        """The broker's value (``BackBroker._get_value``'s sum, term for term, in feed order) over the positions
        held, each at today's close, or its last finite close when today's is missing.

        Backtrader sums every position it ever opened, so a missing close of any traded name (or, through
        getposition, of any name at all) made the whole equity NaN; a flat position adds exactly 0.0 to the sum,
        so leaving them out changes no bit, and the full and the pruned path (fewer feeds) agree to the last bit.
        """
        broker = self.broker
        unlevered = 0.0
        for data, pos in zip(self.datas, held):
            if not pos.size:
                continue
            price = data.close[0]
            if not np.isfinite(price):
                price = _last_finite(closes, data._name, pos.price)
            info = broker.getcommissioninfo(data)
            dvalue = info.getvaluesize(pos.size, price) if broker.p.shortcash else abs(info.getvalue(pos, price))
            unrealized = info.profitandloss(pos.size, pos.price, price)
            if dvalue > 0:
                unlevered += (dvalue - unrealized) / info.get_leverage()
                unlevered += unrealized
            else:
                unlevered += dvalue
        return float(broker.getcash() + unlevered)

    def _check_exits(self, today: pd.Timestamp, last: pd.Series) -> set[str]:
        """Closes-only exits: sell what crossed its stop or take-profit on this close; returns those symbols."""
        hit = set()
        for symbol, (stop, take) in list(self.exits.items()):
            price = last.get(symbol)
            size = self.getposition(self.by_name[symbol]).size
            if price is None or not np.isfinite(price) or size <= 0:
                continue
            reason = ("stop_loss" if stop is not None and price <= stop
                      else "take_profit" if take is not None and price >= take else None)
            if reason:
                del self.exits[symbol]
                self.sell(data=self.by_name[symbol], size=size, exectype=bt.Order.Market).addinfo(
                    decision_date=today, reason=reason)
                hit.add(symbol)
        return hit

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        exits = order.info.get("exits")
        if order.status == order.Completed and order.isbuy() and exits and any(v is not None for v in exits):
            self.exits[order.data._name] = exits  # checked from this (the fill) bar's close on
        side = "buy" if order.isbuy() else "sell"
        name = order.data._name
        if order.status in (order.Completed, order.Canceled, order.Expired) and order in self.legs.get(name, []):
            self.legs[name] = [leg for leg in self.legs[name] if leg is not order]
        if order.status == order.Completed:
            qty = abs(int(order.executed.size))
            price = float(order.executed.price)
            when = bt.num2date(order.executed.dt)
            day = pd.Timestamp(when.date()) if self.decide_at is None else pd.Timestamp(when).round("s")
            self.recorder.fills.append({
                "date": day,
                "symbol": name,
                "side": side,
                "qty": qty,
                "price": price,
                "value": qty * price,
                "commission": float(order.executed.comm),
                # An exit leg has no decision bar: the bar it triggered on stands in, as a leg fill does live.
                "decision_date": order.info.get("decision_date") or day,
                "reason": order.info.get("reason"),
                # cheat-on-close: a market order made at a bar's decision fills at that close, after the bar's
                # equity was recorded (backtests.backtest books it into that bar's equity)
                "at_close": bool(self.broker.p.coc) and order.exectype == bt.Order.Market,
            })
        elif order.status == order.Canceled:
            return  # an exit leg cancelled by its sibling (OCO) or before a sell: not a rejection
        else:
            self.recorder.rejected.append({
                "decision_date": order.info.get("decision_date"), "symbol": name, "side": side,
                "qty": abs(int(order.created.size)), "status": order.getstatusname(),
            })


_FLAT = bt.Position()  # what a feed the broker never traded holds


def _last_finite(closes: pd.DataFrame, symbol: str, fallback: float) -> float:
    """The last finite close of ``symbol`` in ``closes`` (``fallback`` when there is none)."""
    column = closes[symbol].to_numpy(dtype="float64") if symbol in closes.columns else np.empty(0)
    finite = column[np.isfinite(column)]
    return float(finite[-1]) if len(finite) else fallback


def _floats(values) -> np.ndarray:
    """A line slice as float64 without a per-value conversion (``array.array`` shares its buffer)."""
    if isinstance(values, array.array) and values.typecode == "d" and len(values):
        return np.frombuffer(values, dtype="float64")
    return np.asarray(values, dtype="float64")


class ArrayData(bt.feed.DataBase):
    """A Backtrader feed over numpy arrays (``arrays``: datetime as Backtrader numbers, open, high, low, close).

    PandasData reads one pandas scalar per value per bar; this reads plain floats, which is what makes hundreds
    of feeds of intraday bars affordable. Two of Backtrader's per-bar steps are done in bulk with the same
    result: ``preload`` fills the line buffers in one extend per line (what ``load`` bar by bar leaves behind,
    when no date bounds, time zone or filter asks for more), and ``_tick_fill`` copies the bar into the
    ``tick_*`` values the broker reads without the generic attribute walk.
    """

    params = (("arrays", None),)
    _COLUMNS = ("datetime", "open", "high", "low", "close")

    def start(self) -> None:
        super().start()
        self._i = -1
        a = self.p.arrays
        self._arrays = tuple(np.ascontiguousarray(a[k], dtype=np.float64) for k in self._COLUMNS)
        self._cols = None  # Python floats for the bar-by-bar path, made only if it runs (32 bytes per value)
        self._n = len(self._arrays[0])
        # tick_<alias> per line but datetime, in Backtrader's order; the first line's value is also tick_last
        self._ticks = [("tick_" + alias, getattr(self.lines, alias)) for alias in self.getlinealiases()
                       if alias != "datetime"]
        self._tick_first = "tick_" + self._getlinealias(0)
        self._buffers = list(self.lines.lines)  # every line, extra ones included, as Lines.advance walks them
        self._first = self._buffers[0]

    def _load(self) -> bool:
        self._i += 1
        i = self._i
        if i >= self._n:
            return False
        if self._cols is None:
            self._cols = tuple(column.tolist() for column in self._arrays)
        dts, o, h, lo, c = self._cols
        lines = self.lines
        lines.datetime[0] = dts[i]
        lines.open[0] = o[i]
        lines.high[0] = h[i]
        lines.low[0] = lo[i]
        lines.close[0] = c[i]
        lines.volume[0] = 0.0
        lines.openinterest[0] = 0.0
        return True

    def preload(self) -> None:
        plain = (self.fromdate == float("-inf") and self.todate == float("inf") and not self._tzinput
                 and not self._filters and not self._ffilters and not self._barstack and not self._barstash
                 and self._i == -1 and all(len(line.array) == 0 for line in self.lines))
        if not plain:
            super().preload()
            return
        values = dict(zip(self._COLUMNS, self._arrays))
        zeros = np.zeros(self._n)  # volume and open interest: 0.0, as _load sets them
        for alias in self.getlinealiases():
            line = getattr(self.lines, alias)
            line.array.frombytes(values.get(alias, zeros).tobytes())  # the same doubles, 8 bytes each
            line.idx += self._n
            line.lencount += self._n
        self._i = self._n
        self._last()
        self.home()

    def _tick_fill(self, force: bool = False) -> None:
        attrs = self.__dict__  # no __setattr__ hook on feeds: the same attributes setattr would set
        if force or attrs.get(self._tick_first) is None:
            for name, line in self._ticks:
                attrs[name] = line.array[line.idx]  # line[0]
            attrs["tick_last"] = attrs[self._tick_first]

    def __len__(self) -> int:
        return self._first.lencount  # len(self.lines[0]), without the two proxies

    def next(self, datamaster=None, ticks: bool = True):
        # Backtrader's next for a preloaded bar with no master and no ticks is advance(): every line one forward.
        first = self._first
        if datamaster is None and not ticks and first.mode == first.UnBounded and \
                first.lencount < len(first.array) - first.extension:
            for line in self._buffers:
                line._idx += 1
                line.lencount += 1
            return True
        return super().next(datamaster=datamaster, ticks=ticks)


def backtrader_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    """``bt.date2num`` of naive timestamps, vectorised (days since 0001-01-01, plus one, as floats).

    >>> float(backtrader_numbers(pd.DatetimeIndex(["2022-06-01 09:45"]))[0]) == bt.date2num(dt.datetime(2022, 6, 1, 9, 45))
    True
    """
    return 719163.0 + pd.DatetimeIndex(index).as_unit("ns").asi8 / 86_400e9
