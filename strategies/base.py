"""The one contract both homes call: a :class:`Strategy` decides, the shared rulebook turns that into orders.

A strategy is a class with a ``name`` (the prefix of its order ids and journal entries), a ``warmup_bars`` count
(rows of closes ``decide`` needs before its first decision) and ``decide(closes, positions, cash)``. ``closes``
holds the closes up to now and no later row (dates ascending x symbols, NaN where a symbol has no price);
``positions`` maps symbol to :class:`Position` (only the strategy's own holdings); ``cash`` is the buying power
the broker really gives this cycle. It returns target weights ``{symbol: fraction of equity}`` (a held symbol
left out is sold) or a :class:`Decision` for full control. Parameters are a dataclass named ``Params`` on the
class; ``Strategy(**overrides)`` or ``Strategy(params)`` builds one.

Example:
    >>> import pandas as pd
    >>> class HoldFirst(Strategy):
    ...     name = "hold-first"
    ...     warmup_bars = 1
    ...     def decide(self, closes, positions, cash):
    ...         return {closes.columns[0]: 0.5}
    >>> closes = pd.DataFrame({"AAA": [10.0, 11.0]}, index=pd.bdate_range("2022-01-03", periods=2))
    >>> HoldFirst().decide(closes, {}, 1000.0)
    {'AAA': 0.5}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

import pandas as pd


class StrategyError(ValueError):
    """A strategy that cannot be loaded or built, or a decision that breaks the contract; one line of text."""


@dataclass(frozen=True)
class Position:
    """A held position: whole shares and the average entry price."""

    qty: int
    avg_price: float


@dataclass(frozen=True)
class OrderIntent:
    """An order the strategy wants: whole shares at market; ``price`` is the reference price it was sized at."""

    symbol: str
    side: Literal["buy", "sell"]
    qty: int
    price: float
    reason: str


@dataclass(frozen=True)
class Decision:
    """A decision with full control: explicit ``orders``, or ``target_weights`` for the rulebook to trade.

    ``signals``, ``forecasts`` and ``universe`` are for reports and the journal; ``info`` is free-form.
    ``forecasts`` maps a symbol to the price the strategy expects (a number, or an object with ``yhat``): a
    strategy that fills it gets a price-and-forecast panel in ``report.png``; one that leaves it empty gets its
    most traded symbol's prices with its orders marked.
    """

    as_of: pd.Timestamp | None = None
    orders: list[OrderIntent] = field(default_factory=list)
    target_weights: dict[str, float] | None = None
    universe: list[str] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    forecasts: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NoParams:
    """The parameters of a strategy that has none."""


class Strategy:
    """Base class of every strategy; subclass it, set ``name`` and ``warmup_bars``, and write ``decide``."""

    name: ClassVar[str] = "strategy"
    warmup_bars: int = 1
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None, **overrides: Any) -> None:
        if params is None:
            params = self.Params(**overrides)
        elif overrides:
            params = dataclasses.replace(params, **overrides)
        self.params = params

    def decide(self, closes: pd.DataFrame, positions: Mapping[str, Position], cash: float) -> Mapping[str, float] | Decision:
        raise NotImplementedError(f"{type(self).__name__}.decide is not written")

    def candidate_mask(self, closes: pd.DataFrame) -> pd.DataFrame | None:
        """Optional: which symbols each decision could buy, for the whole history at once (``None``: no promise).

        ``closes`` is the whole history a backtest will walk. Return a boolean frame of the same shape where row t
        holds every symbol that ``decide`` on the rows handed at t (the last ``decision_window`` rows up to t)
        could rank or buy. The promise: ``decide`` returns the same decision when its ``closes`` hold only the
        columns True in that row plus the held symbols (any superset of them gives the same decision too). The
        backtest then gives Backtrader feeds only to the names some row marks and hands ``decide`` only those
        columns, so the work per bar follows the names that can trade, not the universe. The default (``None``)
        keeps the full path: every symbol gets a feed and every decision sees every column. So does a subclass that
        overrides ``decide`` but inherits the mask: to keep the promise it must define ``candidate_mask`` too (a
        call to ``super()`` will do when its decision ranks the same way).

        >>> Strategy().candidate_mask(pd.DataFrame({"A": [1.0]})) is None
        True
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Name and parameters as plain values (for summaries, journals and config files)."""
        values = dataclasses.asdict(self.params) if dataclasses.is_dataclass(self.params) else {}
        return {"name": self.name, "class": f"{type(self).__module__}:{type(self).__qualname__}", "params": values}


def decision_window(strategy: Strategy) -> int:
    """Rows of closes handed to ``decide`` in both homes: the strategy's warm-up plus its own look-ahead slack.

    The backtest hands the last ``decision_window`` rows at each bar, the live cycle loads exactly as many, so both
    homes decide on the same rows.

    >>> class S(Strategy):
    ...     warmup_bars = 30
    >>> decision_window(S())
    30
    """
    extra = int(getattr(strategy, "extra_window_bars", 0) or 0)
    return int(strategy.warmup_bars) + extra


def last_prices(closes: pd.DataFrame) -> dict[str, float]:
    """The price of each symbol now: its last close where that is a finite positive number (one read of the row).

    Both homes size orders on these, so they must agree on which symbols have a price.

    >>> last_prices(pd.DataFrame({"A": [1.0, 2.0], "B": [1.0, float("nan")]}))
    {'A': 2.0}
    """
    if not len(closes):
        return {}
    return {str(s): v for s, v in zip(closes.columns.tolist(), closes.iloc[-1].to_numpy(dtype="float64").tolist())
            if math.isfinite(v) and v > 0}


def as_decision(result: Any, strategy: Strategy, closes: pd.DataFrame, positions: Mapping[str, Position]) -> Decision:
    """Check what ``decide`` returned against the contract and wrap it as a :class:`Decision`.

    Weights must be finite, non-negative, for symbols in ``closes`` with a price now, and sum to at most 1; orders
    must be whole positive quantities of priced symbols. Anything else raises :class:`StrategyError` naming it.

    >>> import pandas as pd
    >>> closes = pd.DataFrame({"AAA": [1.0]}, index=pd.bdate_range("2022-01-03", periods=1))
    >>> as_decision({"AAA": -0.1}, Strategy(), closes, {})
    Traceback (most recent call last):
    ...
    strategies.base.StrategyError: strategy 'strategy' returned a negative weight -0.1 for AAA (short selling is not supported)
    """
    who = f"strategy {strategy.name!r}"
    as_of = pd.Timestamp(closes.index[-1]) if len(closes) else None
    if isinstance(result, Decision):
        decision = result if result.as_of is not None else dataclasses.replace(result, as_of=as_of)
    elif isinstance(result, Mapping):
        decision = Decision(as_of=as_of, target_weights=dict(result))
    else:
        raise StrategyError(f"{who} returned {type(result).__name__}; decide must return target weights "
                            f"(a dict of symbol to fraction) or a Decision")
    priced = set(last_prices(closes))
    if decision.target_weights is not None:
        total = 0.0
        for symbol, weight in decision.target_weights.items():
            if not isinstance(symbol, str):
                raise StrategyError(f"{who} returned a weight for {symbol!r}, which is not a symbol")
            try:
                value = float(weight)
            except (TypeError, ValueError):
                raise StrategyError(f"{who} returned a non-numeric weight {weight!r} for {symbol}") from None
            if not math.isfinite(value):
                raise StrategyError(f"{who} returned a non-finite weight {weight!r} for {symbol}")
            if value < 0:
                raise StrategyError(f"{who} returned a negative weight {value:g} for {symbol} (short selling is "
                                    f"not supported)")
            if value > 0 and symbol not in priced:
                known = "has no price now" if symbol in closes.columns else "is not in its closes"
                raise StrategyError(f"{who} returned a weight for {symbol}, which {known}")
            total += value
        if total > 1 + 1e-9:
            raise StrategyError(f"{who} returned weights summing to {total:.6g}, above 1 (no leverage)")
    for order in decision.orders:
        if not isinstance(order, OrderIntent):
            raise StrategyError(f"{who} returned an order of type {type(order).__name__}, not an OrderIntent")
        if order.side not in ("buy", "sell"):
            raise StrategyError(f"{who} returned an order with side {order.side!r} for {order.symbol}")
        if not isinstance(order.qty, int) or isinstance(order.qty, bool) or order.qty < 1:
            raise StrategyError(f"{who} returned an order for {order.qty!r} shares of {order.symbol}; quantities "
                                f"are whole positive numbers")
        if order.symbol not in priced:
            raise StrategyError(f"{who} returned an order for {order.symbol}, which has no price now")
        if not (isinstance(order.price, (int, float)) and math.isfinite(order.price) and order.price > 0):
            raise StrategyError(f"{who} returned an order for {order.symbol} at a bad price {order.price!r}")
    return decision
