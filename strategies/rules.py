"""The shared rulebook: what both homes do between a strategy's decision and the broker.

One model of sizing, limits and stops, applied identically in the backtest and the live cycle:

1. Target weights become whole-share orders at the last close (a held symbol left out is sold).
2. **Sells first**, never more than the strategy holds; a symbol with an open order sits the cycle out.
3. **Buys sized on the buying power the broker really gives now**: sale proceeds are not counted (a broker credits
   them only once the sells fill), so each buy is cut to what is left of ``cash`` after the buys before it.
4. ``max_positions`` (names held after this cycle) and ``max_order_notional`` (one order's value) cap the buys;
   ``capital`` caps what they spend at the capital less the strategy's own exposure. Every order is priced by the
   rulebook at the last price it sizes with, whatever price a strategy declared (``at_rulebook_prices``).
5. ``stop_loss`` / ``take_profit`` attach exit prices to every buy, as fractions of its reference price: broker
   brackets live, simulated inside the bar in the backtest (see ``backtests.backtrader_adapter``).

Example:
    >>> from strategies.base import Decision, Position
    >>> rules = Rules(max_positions=2, max_order_notional=500.0, stop_loss=0.02)
    >>> planned, skipped = plan_orders(Decision(target_weights={"AAA": 0.5, "BBB": 0.5}), {}, cash=1000.0,
    ...                                prices={"AAA": 10.0, "BBB": 20.0}, rules=rules)
    >>> [(p.symbol, p.side, p.qty, p.stop_loss_price) for p in planned]
    [('AAA', 'buy', 50, 9.8), ('BBB', 'buy', 25, 19.6)]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from strategies.base import Decision, OrderIntent, Position
from strategies.execution import Costs

MAX_ORDER_NOTIONAL = 25_000.0
MAX_POSITIONS = 20


@dataclass(frozen=True)
class Rules:
    """Limits and stops, the same in both homes (``--max-positions`` means ``MAX_POSITIONS``, and so on).

    ``None`` turns a limit off. The defaults are the live cycle's safety defaults, so an unconfigured backtest
    rehearses what an unconfigured bot would do.
    """

    max_positions: int | None = MAX_POSITIONS
    max_order_notional: float | None = MAX_ORDER_NOTIONAL
    stop_loss: float | None = None
    take_profit: float | None = None
    # A held name is resized toward its target weight only when it is off by more than this (a fraction of
    # equity): prices and fills drift every bar, and chasing that drift would trade every holding every day.
    rebalance_band: float = 0.02
    # The dollars this strategy may have invested at once (None: the broker's buying power is the only limit), so
    # variants sharing one account each keep to their own share of it (see :meth:`spendable`).
    capital: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rebalance_band) and 0 <= self.rebalance_band < 1):
            raise ValueError(f"rebalance_band must be a fraction in [0, 1), got {self.rebalance_band!r}")
        if self.max_positions is not None and (isinstance(self.max_positions, bool) or int(self.max_positions) != self.max_positions
                                               or self.max_positions < 1):
            raise ValueError(f"max_positions must be a whole number of at least 1 or none, got {self.max_positions!r}")
        if self.max_order_notional is not None and not (math.isfinite(self.max_order_notional) and self.max_order_notional > 0):
            raise ValueError(f"max_order_notional must be a positive number or none, got {self.max_order_notional!r}")
        if self.capital is not None and not (math.isfinite(self.capital) and self.capital > 0):
            raise ValueError(f"capital must be a positive number or none, got {self.capital!r}")
        for label, value in (("stop_loss", self.stop_loss), ("take_profit", self.take_profit)):
            if value is not None and not (math.isfinite(value) and 0 < value < (1 if label == "stop_loss" else 10)):
                raise ValueError(f"{label} must be a positive fraction such as 0.02, or none, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def spendable(self, cash: float, positions: Mapping[str, Position], prices: Mapping[str, float]) -> float:
        """What buys may spend now: the broker's ``cash`` (buying power), and with ``capital`` at most the capital
        less this strategy's own exposure (its holdings at ``prices``, else at cost), never below zero.

        >>> Rules(capital=10_000.0).spendable(50_000.0, {"AAA": Position(50, 90.0)}, {"AAA": 100.0})
        5000.0
        """
        cash = max(0.0, float(cash))
        if self.capital is None:
            return cash
        exposure = sum(p.qty * float(prices.get(s, p.avg_price)) for s, p in positions.items() if p.qty > 0)
        return max(0.0, min(cash, self.capital - exposure))

    def exits_for(self, price: float) -> tuple[float | None, float | None]:
        """Stop and take-profit prices for a buy sized at ``price``, in cents as a broker takes them."""
        stop = None if self.stop_loss is None else round(price * (1 - self.stop_loss), 2)
        take = None if self.take_profit is None else round(price * (1 + self.take_profit), 2)
        return stop, take


@dataclass(frozen=True)
class PlannedOrder:
    """An order the rulebook lets through: the intent plus the exit prices of its bracket (buys only)."""

    intent: OrderIntent
    stop_loss_price: float | None = None
    take_profit_price: float | None = None

    @property
    def symbol(self) -> str:
        return self.intent.symbol

    @property
    def side(self) -> str:
        return self.intent.side

    @property
    def qty(self) -> int:
        return self.intent.qty


@dataclass(frozen=True)
class Skipped:
    """An intent the rules removed or changed, and why."""

    symbol: str
    side: str
    action: str  # skipped | reduced
    reason: str


def weights_to_orders(weights: Mapping[str, float], positions: Mapping[str, Position], cash: float,
                      prices: Mapping[str, float], band: float = 0.0) -> list[OrderIntent]:
    """Whole-share orders that move the book to ``weights`` of equity at ``prices`` (held and left out: sold).

    A held name whose weight is within ``band`` of its target is left as it is.

    >>> weights_to_orders({"AAA": 0.5}, {"BBB": Position(3, 9.0)}, 970.0, {"AAA": 10.0, "BBB": 10.0})
    [OrderIntent(symbol='BBB', side='sell', qty=3, price=10.0, reason='target_weight'), OrderIntent(symbol='AAA', side='buy', qty=50, price=10.0, reason='target_weight')]
    """
    held = {s: p for s, p in positions.items() if p.qty > 0}
    equity = cash + sum(p.qty * prices.get(s, p.avg_price) for s, p in held.items())
    sells, buys = [], []
    for symbol in sorted(set(held) | {s for s, w in weights.items() if w > 0}):
        weight = float(weights.get(symbol, 0.0))
        have = held[symbol].qty if symbol in held else 0
        price = prices.get(symbol)
        if price is None or not price > 0:
            continue  # unpriced: nothing can be sized (a held one is left alone)
        # The epsilon keeps a weight computed as qty * price / equity from rounding one share away.
        want = math.floor(weight * max(equity, 0.0) / price + 1e-9) if weight > 0 else 0
        if have and want and equity > 0 and abs(have * price / equity - weight) <= band:
            continue
        if want < have:
            sells.append(OrderIntent(symbol, "sell", have - want, price, "target_weight"))
        elif want > have:
            buys.append(OrderIntent(symbol, "buy", want - have, price, "target_weight"))
    return sells + buys


def plan_orders(decision: Decision, positions: Mapping[str, Position], cash: float, prices: Mapping[str, float],
                rules: Rules, *, universe: Iterable[str] | None = None,
                open_symbols: Iterable[str] = (), costs: Costs | None = None) -> tuple[list[PlannedOrder], list[Skipped]]:
    """The orders to send, sells first, and what the rules skipped or reduced (see the module docstring).

    ``universe`` (the live candidate list) limits what may be bought; ``open_symbols`` are symbols with an open
    order at the broker, which sit the cycle out in both directions. ``costs`` (``strategies.execution``): a buy
    is sized so that its fill price (slippage) and commission fit the cash, so no broker refuses it for cents.

    >>> d = Decision(target_weights={"AAA": 1.0})
    >>> plan_orders(d, {}, 1000.0, {"AAA": 10.0}, Rules())[0][0].qty
    100
    >>> plan_orders(d, {}, 1000.0, {"AAA": 10.0}, Rules(), costs=Costs(commission=0.001))[0][0].qty
    99
    """
    cash = rules.spendable(cash, positions, prices)  # capital: the same cap in both homes, whatever the caller passed
    intents = at_rulebook_prices(decision.orders, prices) if decision.orders else (
        weights_to_orders(decision.target_weights, positions, cash, prices, rules.rebalance_band)
        if decision.target_weights is not None
        else [])
    allowed = None if universe is None else set(universe)
    blocked = set(open_symbols)
    kept: list[PlannedOrder] = []
    notes: list[Skipped] = []
    held = {s for s, p in positions.items() if p.qty > 0}
    for o in (i for i in intents if i.side == "sell"):
        have = positions[o.symbol].qty if o.symbol in positions else 0
        if o.symbol in blocked:
            notes.append(Skipped(o.symbol, o.side, "skipped", "an open (or just cancelled) order exists for this symbol"))
        elif have <= 0:
            notes.append(Skipped(o.symbol, o.side, "skipped", "not held by this strategy"))
        else:
            if o.qty > have:
                notes.append(Skipped(o.symbol, o.side, "reduced", f"only {have} held, not {o.qty}"))
            kept.append(PlannedOrder(replace(o, qty=min(o.qty, have))))
            if o.qty >= have:
                held.discard(o.symbol)
    remaining = max(0.0, float(cash))
    for o in (i for i in intents if i.side == "buy"):
        if o.symbol in blocked:
            notes.append(Skipped(o.symbol, o.side, "skipped", "an open (or just cancelled) order exists for this symbol"))
            continue
        if allowed is not None and o.symbol not in allowed:
            notes.append(Skipped(o.symbol, o.side, "skipped", "not in the configured universe"))
            continue
        if rules.max_positions is not None and o.symbol not in held and len(held) >= rules.max_positions:
            notes.append(Skipped(o.symbol, o.side, "skipped", f"max_positions={rules.max_positions} reached"))
            continue
        if not prices.get(o.symbol, 0) > 0:
            notes.append(Skipped(o.symbol, o.side, "skipped", "no price now"))
            continue
        qty = o.qty
        if rules.max_order_notional is not None and qty * o.price > rules.max_order_notional:
            qty = math.floor(rules.max_order_notional / o.price)
            if qty < 1:
                notes.append(Skipped(o.symbol, o.side, "skipped",
                                     f"one share exceeds max_order_notional={rules.max_order_notional:g}"))
                continue
            notes.append(Skipped(o.symbol, o.side, "reduced",
                                 f"{o.qty} -> {qty} shares to stay within max_order_notional={rules.max_order_notional:g}"))
        need = costs.buy_cost(qty, o.price) if costs is not None else qty * o.price
        if need > remaining + 1e-9:
            fit = costs.affordable(remaining, o.price) if costs is not None else math.floor((remaining + 1e-9) / o.price)
            if fit < 1:
                notes.append(Skipped(o.symbol, o.side, "skipped",
                                     f"buying power {remaining:,.2f} is less than one share at {o.price:g}"))
                continue
            notes.append(Skipped(o.symbol, o.side, "reduced",
                                 f"{qty} -> {fit} shares to fit the buying power available now ({remaining:,.2f})"))
            qty = fit
        remaining -= costs.buy_cost(qty, o.price) if costs is not None else qty * o.price
        stop, take = rules.exits_for(o.price)
        kept.append(PlannedOrder(replace(o, qty=qty), stop, take))
        held.add(o.symbol)
    return kept, notes


# -- pricing: the rulebook's own price, whatever a strategy declares ----------------------------------------------

def at_rulebook_prices(intents: Iterable[OrderIntent], prices: Mapping[str, float]) -> list[OrderIntent]:
    """Explicit orders re-priced at ``prices`` (the last price both homes size with): every limit is checked at
    the rulebook's price, never at the one a strategy declared. An order for an unpriced symbol keeps its declared
    price only to be reported; it is dropped by the caller's checks (as_decision refuses unpriced symbols).

    >>> at_rulebook_prices([OrderIntent("LLY", "buy", 200, 1.0, "mine")], {"LLY": 307.41})
    [OrderIntent(symbol='LLY', side='buy', qty=200, price=307.41, reason='mine')]
    """
    return [replace(o, price=float(prices[o.symbol])) if o.symbol in prices else o for o in intents]


def skipped_records(notes: list[Skipped]) -> list[dict]:
    return [asdict(n) for n in notes]
