"""The one function both homes call: closes up to now, holdings and parameters in; a decision out.

Backtrader's ``next()`` calls :func:`decide` with the history up to the current bar; ``lambda_function.run()``
calls it with the history up to the moment it runs. Nothing here reads the clock, the network or a broker.

Example:
    >>> import numpy as np, pandas as pd
    >>> idx = pd.bdate_range("2021-01-04", periods=80)
    >>> rising = np.linspace(50, 90, 80); rising[-1] = 60.0      # a sharp dip below a rising trend
    >>> closes = pd.DataFrame({"DIP": rising, "FLAT": np.full(80, 20.0)}, index=idx)
    >>> params = StrategyParams(top_n=2, lookback=5, history=60, refit_every=1)
    >>> d = decide(closes, positions={}, cash=10_000.0, params=params)
    >>> [(o.symbol, o.side) for o in d.orders]
    [('DIP', 'buy')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from strategies.forecaster import Forecaster, ForecastPoint
from strategies.params import StrategyParams
from strategies.signals import Position, Signal, decide_action
from strategies.sizing import OrderIntent, plan_orders, target_weights
from strategies.universe import top_n_by_momentum


@dataclass(frozen=True)
class Decision:
    """What the strategy wants at ``as_of``: the universe, a signal per evaluated symbol, orders and weights."""

    as_of: pd.Timestamp
    universe: list[str]
    signals: dict[str, Signal]
    forecasts: dict[str, ForecastPoint]
    orders: list[OrderIntent]
    target_weights: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


def decide(
    closes: pd.DataFrame,
    positions: Mapping[str, Position],
    cash: float,
    params: StrategyParams,
    forecaster: Forecaster | None = None,
    candidates: Sequence[str] | None = None,
) -> Decision:
    """Decide at the last row of ``closes`` (rows: dates ascending, columns: symbols; NaN where no price).

    ``positions`` maps symbol to :class:`Position`; held symbols are always evaluated, so they can be sold.
    Pass the same ``forecaster`` across calls to reuse fits within a refit block. ``candidates`` limits the
    momentum ranking (default: every column), so a holding outside the universe is evaluated but never ranked.
    """
    if closes.empty:
        raise ValueError("no closes to decide on")
    forecaster = forecaster or Forecaster(params)
    as_of = pd.Timestamp(closes.index[-1])
    ranked = closes if candidates is None else closes[[c for c in candidates if c in closes.columns]]
    universe = top_n_by_momentum(ranked, params.top_n, params.lookback, min_history=params.history)
    held = [s for s, p in positions.items() if p.qty > 0]
    evaluate = universe + sorted(s for s in held if s not in universe)
    last = closes.iloc[-1]
    priced = [s for s in evaluate if s in closes.columns and np.isfinite(last.get(s, np.nan))]
    forecasts = forecaster.forecasts(closes, priced)
    signals = {}
    for symbol in priced:
        price = float(last[symbol])
        point = forecasts.get(symbol)
        action, reason = decide_action(price, None if point is None else point.yhat, positions.get(symbol), params)
        signals[symbol] = Signal(symbol, price, None if point is None else point.yhat, action, reason, symbol in universe)
    orders = plan_orders(list(signals.values()), positions, cash, params)
    prices = {s: float(last[s]) for s in closes.columns if np.isfinite(last[s])}
    weights = target_weights(positions, orders, prices, cash)
    return Decision(as_of, universe, signals, forecasts, orders, weights, info={"fits": forecaster.fits})
