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

from strategies.params import StrategyParams

Action = Literal["buy", "sell", "hold"]


@dataclass(frozen=True)
class Position:
    """A held position: whole shares and the average entry price (for stop-loss and take-profit)."""

    qty: int
    avg_price: float


@dataclass(frozen=True)
class Signal:
    symbol: str
    price: float
    forecast: float | None
    action: Action
    reason: str
    in_universe: bool


def decide_action(price: float, forecast: float | None, position: Position | None, params: StrategyParams) -> tuple[Action, str]:
    """``(action, reason)`` for one symbol. Holders are never told to buy more; non-holders never to sell."""
    held = position is not None and position.qty > 0
    if held and params.stop_loss is not None and price <= position.avg_price * (1 - params.stop_loss):
        return "sell", "stop_loss"
    if held and params.take_profit is not None and price >= position.avg_price * (1 + params.take_profit):
        return "sell", "take_profit"
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
