"""The Backtrader home of the strategy: at every bar, hand :func:`strategies.decide` the closes seen so far.

History is read from Backtrader's own lines (``data.close.get``), which hold no row after the current bar, so the
decision cannot see the future by construction. Market orders placed at bar t fill at bar t+1's open (the next
close for closes-only data).

Only the backtest imports this module (it needs backtrader); the Lambda function never does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

import backtrader as bt
import numpy as np
import pandas as pd

from strategies.forecaster import Forecaster
from strategies.params import StrategyParams
from strategies.prophet_trend import Decision, decide
from strategies.signals import Position


@dataclass
class BacktestRecorder:
    """What the run leaves behind: equity per bar, executed orders, rejected orders and every decision."""

    equity: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


class ProphetTrendStrategy(bt.Strategy):
    """Backtrader adapter. ``params``: the StrategyParams, a shared Forecaster, the first trading day and a recorder."""

    params = (
        ("sparams", None),
        ("forecaster", None),
        ("start", None),
        ("recorder", None),
        ("on_bar", None),
    )

    def __init__(self) -> None:
        self.sp: StrategyParams = self.p.sparams
        self.forecaster: Forecaster = self.p.forecaster or Forecaster(self.sp)
        self.recorder: BacktestRecorder = self.p.recorder or BacktestRecorder()
        self.first_day: dt.date | None = self.p.start
        self.on_bar: Callable[[], None] | None = self.p.on_bar
        self.symbols = [d._name for d in self.datas]
        self.dates: list[pd.Timestamp] = []
        self.window = self.sp.warmup_bars + self.sp.horizon

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
        decision = decide(closes, positions, float(self.broker.getcash()), self.sp, self.forecaster)
        self.recorder.decisions.append(decision)
        invested = sum(p.qty * float(closes[s].iloc[-1]) for s, p in positions.items())
        self.recorder.equity.append(
            {"date": today, "equity": float(self.broker.getvalue()), "cash": float(self.broker.getcash()),
             "invested": invested}
        )
        by_name = {d._name: d for d in self.datas}
        for intent in decision.orders:
            make = self.buy if intent.side == "buy" else self.sell
            order = make(data=by_name[intent.symbol], size=intent.qty, exectype=bt.Order.Market)
            order.addinfo(decision_date=today, reason=intent.reason)

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        side = "buy" if order.isbuy() else "sell"
        if order.status == order.Completed:
            qty = abs(int(order.executed.size))
            price = float(order.executed.price)
            self.recorder.fills.append({
                "date": pd.Timestamp(bt.num2date(order.executed.dt).date()),
                "symbol": order.data._name,
                "side": side,
                "qty": qty,
                "price": price,
                "value": qty * price,
                "commission": float(order.executed.comm),
                "decision_date": order.info.get("decision_date"),
                "reason": order.info.get("reason"),
            })
        else:
            self.recorder.rejected.append({
                "decision_date": order.info.get("decision_date"), "symbol": order.data._name, "side": side,
                "qty": abs(int(order.created.size)), "status": order.getstatusname(),
            })
