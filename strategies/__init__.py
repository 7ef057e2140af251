"""Decisions only: no network, no broker, no clock reads, no backtrader.

The contract both homes call is :class:`Strategy` (``strategies.base``); the shared rulebook that turns its
decisions into orders is ``strategies.rules``; strategies are found by name or path with ``strategies.loader``.

Example:
    >>> from strategies import ProphetTrend, build_strategy
    >>> ProphetTrend().params.top_n, build_strategy("ma-crossover").name
    (10, 'ma-crossover')
"""

from strategies.base import Decision, OrderIntent, Position, Strategy, StrategyError, decision_window
from strategies.cadence import Cadence
from strategies.forecaster import Forecaster, ForecastPoint
from strategies.loader import build_strategy, load_strategy
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend, decide
from strategies.rules import PlannedOrder, Rules, plan_orders
from strategies.signals import Signal, decide_action
from strategies.sizing import target_weights
from strategies.universe import momentum, top_n_by_momentum

__all__ = [
    "Cadence", "Decision", "ForecastPoint", "Forecaster", "OrderIntent", "PlannedOrder", "Position", "ProphetTrend",
    "Rules", "Signal", "Strategy", "StrategyError", "StrategyParams", "build_strategy", "decide", "decide_action",
    "decision_window", "load_strategy", "momentum", "plan_orders", "target_weights", "top_n_by_momentum",
]
