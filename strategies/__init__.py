"""The ProphetTrend decision, pure: no network, no broker, no clock reads.

Example:
    >>> from strategies import StrategyParams
    >>> StrategyParams().top_n
    10
"""

from strategies.forecaster import Forecaster, ForecastPoint
from strategies.params import StrategyParams
from strategies.prophet_trend import Decision, decide
from strategies.signals import Position, Signal, decide_action
from strategies.sizing import OrderIntent, plan_orders, target_weights
from strategies.universe import momentum, top_n_by_momentum

__all__ = [
    "Decision", "ForecastPoint", "Forecaster", "OrderIntent", "Position", "Signal", "StrategyParams",
    "decide", "decide_action", "momentum", "plan_orders", "target_weights", "top_n_by_momentum",
]
