"""The per-symbol decision: compare today's price with Prophet's forecast.

Example:
    >>> from strategies.params import StrategyParams
    >>> decide_action(price=90.0, forecast=100.0, position=None, params=StrategyParams())
    ('buy', 'below_forecast')
    >>> decide_action(price=110.0, forecast=100.0, position=Position(5, 95.0), params=StrategyParams())
    ('sell', 'above_forecast')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from strategies.base import Position
from strategies.params import StrategyParams

Action = Literal["buy", "sell", "hold"]


@dataclass(frozen=True)
class Signal:
    symbol: str
    price: float
    forecast: float | None
    action: Action
    reason: str
    in_universe: bool


def decide_action(price: float, forecast: float | None, position: Position | None, params: StrategyParams) -> tuple[Action, str]:
    """``(action, reason)`` for one symbol. Holders are never told to buy more; non-holders never to sell.

    Stops are not decided here: the shared rulebook attaches them to every buy (``strategies.rules``)."""
    held = position is not None and position.qty > 0
    if forecast is None:
        return "hold", "no_forecast"
    below = price < forecast * (1 - params.band)
    above = price > forecast * (1 + params.band)
    buy_zone, sell_zone = (below, above) if params.mode == "revert" else (above, below)
    if held:
        return ("sell", "above_forecast" if above else "below_forecast") if sell_zone else ("hold", "holding")
    if buy_zone:
        return "buy", "below_forecast" if below else "above_forecast"
    return "hold", "inside_band" if not (below or above) else "no_entry"
