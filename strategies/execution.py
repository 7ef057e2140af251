"""The execution model both homes share: when an order fills, at what price, and what it costs.

One model serves the backtest (``backtests.backtest`` sets Backtrader's broker from it), the paper broker
(``brokers.paper`` fills through it) and the live sizing (``strategies.rules.plan_orders`` sizes buys so that
price, slippage and fees fit the buying power). Its default is what the live bot really gets:

- **daily cadence on daily bars**: the decision bar's close. The bot decides at 15:45 New York time and its
  market orders fill at about that moment's price; the day's close, 15 minutes later, is the nearest price daily
  bars hold (a documented approximation: docs/execution.md). Backtrader: cheat-on-close.
- **daily cadence on intraday bars**: the bar at the decision moment (the bar that opens at 15:45: its open).
- **intraday cadence (15min)**: the next bar's open, the bar that opens at the slot.

``fill="next-bar"`` is the conservative research option: on daily bars an order decided on bar t fills at bar
t+1's open (its close for closes-only data), a day later than the bot. Intraday bars fill at the next bar's
open in both modes: that already is the bar at the decision moment.

Costs (:class:`Costs`): a commission as a fraction of traded value (0 at Alpaca), slippage in basis points (buys
fill that much higher, sells that much lower) and the regulatory fees Alpaca passes on for sells, from a dated
table (:data:`ALPACA_FEES`), each rounded up to the cent per order as Alpaca rounds them.

Example:
    >>> costs = Costs(slippage_bps=2.0)
    >>> round(costs.fill_price("buy", 100.0), 4), round(costs.fill_price("sell", 100.0), 4)
    (100.02, 99.98)
    >>> costs.fees("buy", 100, 100.0, dt.date(2022, 6, 1))          # Alpaca: nothing on buys
    0.0
    >>> costs.fees("sell", 100, 100.0, dt.date(2022, 6, 1))         # SEC 10,000 x 22.90/1e6 -> 0.23, TAF 0.0130 -> 0.02
    0.25
    >>> costs.affordable(10_000.0, 100.0)                           # 100 shares would need 10,002.00
    99
    >>> Execution.from_mapping({"fill": "next-bar", "slippage_bps": 5}).describe()["fill"]
    'next-bar'
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

FILLS = ("decision", "next-bar")
REGULATORY = ("alpaca", "none")
DEFAULT_SLIPPAGE_BPS = 2.0


@dataclass(frozen=True)
class FeeRates:
    """The regulatory fees on sells in effect from ``since``: SEC Section 31 per dollar sold, FINRA TAF per share
    sold with a cap per trade."""

    since: dt.date
    sec_per_million: float
    taf_per_share: float
    taf_max: float


# Sources (checked 2026-12): Alpaca passes both fees on for sells only, each rounded up to the cent
# (https://alpaca.markets/support/regulatory-fees, https://docs.alpaca.markets/docs/regulatory-fees).
# SEC Section 31 rates: the SEC's fee rate advisories (https://www.sec.gov/rules-regulations/fee-rate-advisories);
# 22.10 to 2021-02-24 and 5.10 from 2021-02-25 are quoted from the FY2021 advisory, 27.80 and 0.00 from Alpaca's
# page; the 2022 and 2023 rows are from the advisories as published for those years (see docs/execution.md).
# FINRA TAF: By-Laws Schedule A section 1 (https://www.finra.org/rules-guidance/rulebooks/corporate-organization/
# section-1-member-regulatory-fees), raised each 1 January 2022-2024; 0.000166 / 8.30 quoted by Alpaca.
ALPACA_FEES: tuple[FeeRates, ...] = (
    FeeRates(dt.date(2020, 2, 18), 22.10, 0.000119, 5.95),
    FeeRates(dt.date(2021, 2, 25), 5.10, 0.000119, 5.95),
    FeeRates(dt.date(2022, 1, 1), 5.10, 0.000130, 6.49),
    FeeRates(dt.date(2022, 5, 24), 22.90, 0.000130, 6.49),
    FeeRates(dt.date(2023, 1, 1), 22.90, 0.000145, 7.27),
    FeeRates(dt.date(2023, 2, 27), 8.00, 0.000145, 7.27),
    FeeRates(dt.date(2024, 1, 1), 8.00, 0.000166, 8.30),
    FeeRates(dt.date(2024, 5, 22), 27.80, 0.000166, 8.30),
    FeeRates(dt.date(2025, 5, 14), 0.00, 0.000166, 8.30),
)


def fee_rates(day: dt.date, table: tuple[FeeRates, ...] = ALPACA_FEES) -> FeeRates:
    """The rates in effect on ``day`` (the first row's before the table starts).

    >>> fee_rates(dt.date(2021, 3, 1)).sec_per_million, fee_rates(dt.date(2019, 1, 2)).sec_per_million
    (5.1, 22.1)
    """
    chosen = table[0]
    for row in table:
        if row.since <= day:
            chosen = row
    return chosen


def _cents_up(amount: float) -> float:
    # Rounded up to the cent as Alpaca rounds each fee; the 1e-9 keeps an exact cent (0.23000000001) a cent.
    return math.ceil(amount * 100 - 1e-9) / 100 if amount > 0 else 0.0


@dataclass(frozen=True)
class Costs:
    """What a fill costs beyond the quoted price: ``commission`` (fraction of value, both sides), ``slippage_bps``
    (buys pay more, sells get less) and ``regulatory`` fees on sells (``alpaca``: :data:`ALPACA_FEES`; ``none``)."""

    commission: float = 0.0
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    regulatory: str = "alpaca"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.commission) and 0 <= self.commission < 0.1):
            raise ValueError(f"commission must be a fraction in [0, 0.1), got {self.commission}")
        if not (math.isfinite(self.slippage_bps) and 0 <= self.slippage_bps < 1000):
            raise ValueError(f"slippage_bps must be in [0, 1000) basis points, got {self.slippage_bps}")
        if self.regulatory not in REGULATORY:
            raise ValueError(f"costs must be one of {', '.join(REGULATORY)}, got {self.regulatory!r}")

    @property
    def slip(self) -> float:
        """Slippage as a fraction (what Backtrader's ``slip_perc`` takes)."""
        return self.slippage_bps / 10_000

    def fill_price(self, side: str, price: float) -> float:
        """The price a market order fills at when the market's price is ``price`` (the same float in both homes)."""
        return price * (1 + self.slip) if side == "buy" else price * (1 - self.slip)

    def fees(self, side: str, qty: float, fill_price: float, day: dt.date) -> float:
        """Commission plus regulatory fees of one order of ``qty`` shares filled at ``fill_price`` on ``day``."""
        qty = abs(qty)
        value = qty * fill_price
        fee = value * self.commission
        if side == "sell" and self.regulatory == "alpaca":
            rates = fee_rates(day)
            fee += _cents_up(value * rates.sec_per_million / 1e6)
            fee += _cents_up(min(qty * rates.taf_per_share, rates.taf_max))
        return fee

    def buy_cost(self, qty: int, price: float) -> float:
        """The cash a buy of ``qty`` at the market's ``price`` takes (fill price and commission; no fees on buys)."""
        value = qty * self.fill_price("buy", price)
        return value + value * self.commission

    def affordable(self, cash: float, price: float) -> int:
        """The most whole shares a buy at ``price`` can take from ``cash``, costs included."""
        if not price > 0 or cash <= 0:
            return 0
        qty = math.floor(cash / (self.fill_price("buy", price) * (1 + self.commission)) + 1e-9)
        while qty > 0 and self.buy_cost(qty, price) > cash + 1e-9:  # float edge: never a share too many
            qty -= 1
        return qty

    def describe(self) -> dict[str, Any]:
        return {"commission": self.commission, "slippage_bps": self.slippage_bps, "costs": self.regulatory}


@dataclass(frozen=True)
class Execution:
    """When orders fill (``fill``: ``decision`` or ``next-bar``) and what they cost (``costs``)."""

    fill: str = "decision"
    costs: Costs = field(default_factory=Costs)

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Execution":
        """From a config's ``[backtest]`` table (keys ``fill``, ``costs``, ``commission``, ``slippage_bps``)."""
        costs = Costs(commission=float(values.get("commission", 0.0) or 0.0),
                      slippage_bps=float(values.get("slippage_bps", DEFAULT_SLIPPAGE_BPS)),
                      regulatory=str(values.get("costs", "alpaca")))
        return cls(fill=str(values.get("fill", "decision")), costs=costs)

    def at_close(self, intraday_bars: bool) -> bool:
        """Whether an order fills at its decision bar's close (daily bars, ``decision`` fill)."""
        return self.fill == "decision" and not intraday_bars

    def rule(self, intraday_bars: bool) -> str:
        """In words, for reports."""
        if intraday_bars:
            return "the open of the bar that starts at the decision moment"
        return ("the decision bar's close (the 15:45 fill's nearest daily price)" if self.fill == "decision"
                else "the next bar's open, or its close with closes-only data (conservative, research only)")

    def describe(self, intraday_bars: bool = False) -> dict[str, Any]:
        return {"fill": self.fill, "fills_at": self.rule(intraday_bars), **self.costs.describe()}
