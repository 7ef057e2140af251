"""The Backtrader home of any :class:`~strategies.Strategy`: at every bar, decide on the closes seen so far.

History is read from Backtrader's own lines (``data.close.get``), which hold no row after the current bar, so the
decision cannot see the future by construction. What the strategy returns goes through the same rulebook as live
(``strategies.rules``): sells first, buys sized on the cash the broker has now (sale proceeds are not counted),
``max_positions`` and ``max_order_notional``. Market orders placed at bar t fill at bar t+1's open (its close for
closes-only data).

Stops: every buy with a stop-loss or take-profit is a Backtrader bracket, the backtest's stand-in for Alpaca's
broker-side bracket. Its exit legs are a Stop at the stop price and a Limit at the take-profit price, active from
the bar the entry fills. With highs and lows in the data they trigger inside the bar and fill at their price (at
the open when the bar gaps through it); with closes only (open = high = low = close) they trigger on a close
beyond the price and fill at that close. A strategy's own sell of a protected holding cancels its legs first, as
the live cycle cancels a bracket's legs before selling.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

import backtrader as bt
import numpy as np
import pandas as pd

from strategies.base import Decision, Position, Strategy, as_decision, decision_window
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


class StrategyAdapter(bt.Strategy):
    """Backtrader adapter: ``user_strategy`` (a Strategy), ``rules``, the first trading day, a recorder, a bar callback."""

    params = (
        ("user_strategy", None),
        ("rules", None),
        ("start", None),
        ("recorder", None),
        ("on_bar", None),
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
        self.legs: dict[str, list[bt.Order]] = {}  # open bracket exit legs per symbol

    def prenext(self) -> None:  # feeds are aligned, but keep the calendar complete if one starts late
        self.next()

    def next(self) -> None:
        today = pd.Timestamp(self.datas[0].datetime.date(0))
        self.dates.append(today)
        if self.on_bar:
            self.on_bar()
        if self.first_day is not None and today.date() < self.first_day:
            return
        n = min(len(self.dates), self.window)
        closes = pd.DataFrame(
            {d._name: np.asarray(d.close.get(size=n), dtype="float64") if len(d) >= n else np.full(n, np.nan)
             for d in self.datas},
            index=pd.DatetimeIndex(self.dates[-n:]),
        )
        positions = {}
        for d in self.datas:
            pos = self.getposition(d)
            if pos.size > 0:
                positions[d._name] = Position(int(pos.size), float(pos.price))
        cash = float(self.broker.getcash())
        decision = as_decision(self.strategy.decide(closes, positions, cash), self.strategy, closes, positions)
        self.recorder.decisions.append(decision)
        last = closes.iloc[-1]
        prices = {s: float(v) for s, v in last.items() if np.isfinite(v)}
        invested = sum(p.qty * prices.get(s, p.avg_price) for s, p in positions.items())
        self.recorder.equity.append(
            {"date": today, "equity": float(self.broker.getvalue()), "cash": cash, "invested": invested}
        )
        planned, notes = plan_orders(decision, positions, cash, prices, self.rules)
        self.recorder.skipped += [{"decision_date": today, "symbol": n.symbol, "side": n.side, "action": n.action,
                                   "reason": n.reason} for n in notes]
        for order in planned:
            data = self.by_name[order.symbol]
            info = dict(decision_date=today, reason=order.intent.reason)
            if order.side == "sell":
                for leg in self.legs.pop(order.symbol, []):
                    self.cancel(leg)
                self.sell(data=data, size=order.qty, exectype=bt.Order.Market).addinfo(**info)
            elif order.stop_loss_price is None and order.take_profit_price is None:
                self.buy(data=data, size=order.qty, exectype=bt.Order.Market).addinfo(**info)
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

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        side = "buy" if order.isbuy() else "sell"
        name = order.data._name
        if order.status in (order.Completed, order.Canceled, order.Expired) and order in self.legs.get(name, []):
            self.legs[name] = [leg for leg in self.legs[name] if leg is not order]
        if order.status == order.Completed:
            qty = abs(int(order.executed.size))
            price = float(order.executed.price)
            day = pd.Timestamp(bt.num2date(order.executed.dt).date())
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
            })
        elif order.status == order.Canceled:
            return  # an exit leg cancelled by its sibling (OCO) or before a sell: not a rejection
        else:
            self.recorder.rejected.append({
                "decision_date": order.info.get("decision_date"), "symbol": name, "side": side,
                "qty": abs(int(order.created.size)), "status": order.getstatusname(),
            })
