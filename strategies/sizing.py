"""Turn signals into whole-share orders and the target weights they imply.

Sells close whole positions; buys share ``cash_fraction`` of the buying power available now equally (sale proceeds
are not counted: a broker credits them only once the sells fill, see ``strategies.rules``), each capped at
``max_weight`` of equity when that is set.

Example:
    >>> from strategies.params import StrategyParams
    >>> from strategies.signals import Signal
    >>> sig = [Signal("AAA", 10.0, 12.0, "buy", "below_forecast", True)]
    >>> [(o.symbol, o.side, o.qty) for o in size_signals(sig, {}, cash=1000.0, params=StrategyParams())]
    [('AAA', 'buy', 95)]
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from strategies.base import OrderIntent, Position
from strategies.params import StrategyParams
from strategies.signals import Signal


def size_signals(
    signals: Sequence[Signal], positions: Mapping[str, Position], cash: float, params: StrategyParams
) -> list[OrderIntent]:
    """Sells first, then equal-weight buys from today's buying power; symbols in the order of ``signals``."""
    orders = []
    for s in signals:
        held = positions.get(s.symbol)
        if s.action == "sell" and held is not None and held.qty > 0:
            orders.append(OrderIntent(s.symbol, "sell", int(held.qty), s.price, s.reason))
    buys = [s for s in signals if s.action == "buy" and s.in_universe and s.price > 0]
    if buys:
        budget = params.cash_fraction * max(cash, 0.0) / len(buys)
        if params.max_weight is not None:
            equity = cash + sum(held.qty * s.price for s in signals if (held := positions.get(s.symbol)) is not None)
            budget = min(budget, params.max_weight * equity)
        for s in buys:
            qty = math.floor(budget / s.price)
            if qty >= 1:
                orders.append(OrderIntent(s.symbol, "buy", qty, s.price, s.reason))
    return orders


def target_weights(
    positions: Mapping[str, Position], orders: Sequence[OrderIntent], prices: Mapping[str, float], cash: float
) -> dict[str, float]:
    """Weight of each symbol in the book after ``orders`` fill at ``prices`` (cash is the remainder)."""
    qty = {s: p.qty for s, p in positions.items() if p.qty > 0}
    for o in orders:
        qty[o.symbol] = qty.get(o.symbol, 0) + (o.qty if o.side == "buy" else -o.qty)
    equity = cash + sum(p.qty * prices.get(s, p.avg_price) for s, p in positions.items())
    if equity <= 0:
        return {}
    return {s: q * prices.get(s, 0.0) / equity for s, q in sorted(qty.items()) if q > 0}
