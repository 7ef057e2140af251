"""Where the gap between the live and the backtest return comes from, in dollars that add up exactly.

Both homes start from the same equity ``E0`` at the first account reading and are measured at the last one (the
live account's equity then; the backtest's equity at that bar, without the fills of decisions made at or after
it, which live had not yet sent when it read its account). Every fill of either home in between is one trade of
quantity ``q`` at price ``p`` and fee ``f``, signed ``s`` (+1 buy, -1 sell); ``r`` is the close of its decision
bar (the same number in both homes), ``m`` the market price when it filled (the decision bar's close for a fill
at the decision moment; the fill bar's open, else close, for a fill on a later bar) and ``P`` the close at the
last reading. Marked at ``P``, a home's P&L is exactly ``sum s*q*(P - p) - f`` (plus the positions it held at
the start, from their close then to ``P``), which splits as::

    s*q*(P - r)   what was decided and in what size
  - s*q*(m - r)   timing: the move from the decision price to the price when the fill happened
  - s*q*(p - m)   fill price: slippage against that price
  - f             fees

Per (decision, symbol, side): an order only one home filled is **decisions**; a difference in filled quantity is
**sizing** (``s*(q_live - q_backtest)*(P - r)``). **Remainder** is what the trades do not account for: each
home's equity change minus its trades' P&L, live minus backtest (an equity change no fill explains, an
unrecorded fee, marks at other prices than the closes). So the components plus the remainder are the gap, by
construction, and each is divided by ``E0`` to give return points.

Example:
    >>> import pandas as pd
    >>> closes = pd.DataFrame({"KO": [10.0, 11.0, 12.0]}, index=pd.to_datetime(["2022-06-01", "2022-06-02", "2022-06-03"]))
    >>> live = [Trade(pd.Timestamp("2022-06-01").date(), "KO", "buy", 100, 10.0, 0.0, pd.Timestamp("2022-06-01").date())]
    >>> bt = [Trade(pd.Timestamp("2022-06-01").date(), "KO", "buy", 90, 11.0, 0.0, pd.Timestamp("2022-06-02").date())]
    >>> a = attribute(live, bt, closes, AttributionWindow(1000.0, 1200.0, 1000.0 + 90 * 1.0, "2022-06-03"))
    >>> {k: round(v, 2) for k, v in a.dollars.items()}
    {'decisions': 0.0, 'sizing': 20.0, 'timing': 90.0, 'fill prices (slippage)': 0.0, 'fees': 0.0, 'positions held at the start': 0.0, 'unexplained remainder': 0.0}
    >>> round(sum(a.dollars.values()), 2) == round(a.gap_dollars, 2) == 110.0
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

COMPONENTS = ("decisions", "sizing", "timing", "fill prices (slippage)", "fees", "positions held at the start",
              "unexplained remainder")


@dataclass(frozen=True)
class Trade:
    """One home's fill of one decision."""

    key: Any          # the decision: a date (daily) or an intraday slot (Timestamp)
    symbol: str
    side: str         # buy | sell
    qty: float
    price: float
    fee: float
    fill_date: Any    # the bar it filled on (date or Timestamp)

    @property
    def sign(self) -> float:
        return 1.0 if self.side == "buy" else -1.0


@dataclass(frozen=True)
class AttributionWindow:
    """The two ends the returns are measured between, and what each home held and was worth there."""

    start_equity: float                 # E0: the live account at the first reading; the backtest's cash
    live_end_equity: float              # the live account at the last reading
    backtest_end_equity: float          # the backtest's equity at that bar, fills of later decisions taken out
    end: Any                            # the bar of the last reading
    start: Any = None                   # the bar of the first reading (for the positions held then)
    live_start_positions: dict[str, float] = field(default_factory=dict)


@dataclass
class OrderEffect:
    key: Any
    symbol: str
    side: str
    live_qty: float
    live_price: float | None
    backtest_qty: float
    backtest_price: float | None
    dollars: float       # this order's share of the gap (live P&L minus backtest P&L of it, at the last close)


@dataclass
class Attribution:
    start_equity: float
    live_return: float
    backtest_return: float
    dollars: dict[str, float]            # COMPONENTS -> dollars, summing to gap_dollars
    orders: list[OrderEffect]

    @property
    def gap_dollars(self) -> float:
        return (self.live_return - self.backtest_return) * self.start_equity

    @property
    def gap(self) -> float:
        return self.live_return - self.backtest_return

    @property
    def points(self) -> dict[str, float]:
        """Each component as a share of the starting equity (return points), summing to :attr:`gap`."""
        return {k: v / self.start_equity for k, v in self.dollars.items()}


def _day(key: Any) -> pd.Timestamp:
    return pd.Timestamp(key)


def price_at(closes: pd.DataFrame, symbol: str, key: Any, *, before: bool = False) -> float:
    """The close of ``symbol`` at bar ``key`` (the last one at or before it); ``before``: the last bar that started
    before ``key`` (an intraday slot decides on the bars complete at it)."""
    series = closes[symbol].dropna() if symbol in closes.columns else pd.Series(dtype=float)
    at = _day(key)
    upto = series.loc[series.index < at] if before else series.loc[:at]
    if not len(upto):
        raise KeyError(f"no close of {symbol} at {key}")
    return float(upto.iloc[-1])


@dataclass
class _Prices:
    closes: pd.DataFrame
    opens: pd.DataFrame | None
    intraday: bool

    def decision(self, t: Trade) -> float:
        return price_at(self.closes, t.symbol, t.key, before=self.intraday and isinstance(t.key, pd.Timestamp))

    def market(self, t: Trade) -> float:
        """The price when ``t`` filled. Daily: the decision price for a fill on the decision bar (at the decision
        moment), else the fill bar's open (its close when the data has no opens). Intraday: the open of the bar
        it filled on (a live fill's bar is the one starting at its slot)."""
        if not self.intraday and _day(t.fill_date).normalize() == _day(t.key).normalize():
            return self.decision(t)
        timed = isinstance(t.fill_date, pd.Timestamp) and t.fill_date != t.fill_date.normalize()
        bar = (t.fill_date if timed else t.key) if self.intraday else t.fill_date
        if self.opens is not None and t.symbol in self.opens.columns:
            value = self.opens[t.symbol].get(_day(bar))
            if value is not None and value == value:
                return float(value)
        return self.decision(t) if self.intraday else price_at(self.closes, t.symbol, bar)


def attribute(live: list[Trade], backtest: list[Trade], closes: pd.DataFrame, window: AttributionWindow,
              opens: pd.DataFrame | None = None, intraday: bool = False) -> Attribution:
    """Split the gap between the live and the backtest return over ``window`` (see the module docstring).

    ``live`` and ``backtest`` are the trades inside the window; ``closes`` (and ``opens``) the data both used.
    """
    prices = _Prices(closes, opens, intraday)
    end = window.end
    symbols = {t.symbol for t in live + backtest} | set(window.live_start_positions)
    final = {s: price_at(closes, s, end, before=intraday) for s in symbols}  # intraday: the bars complete at end
    out = dict.fromkeys(COMPONENTS, 0.0)

    def pnl(trades: list[Trade]) -> float:
        return sum(t.sign * t.qty * (final[t.symbol] - t.price) - t.fee for t in trades)

    start_value = 0.0 + sum(q * (final[s] - price_at(closes, s, window.start if window.start is not None else end,
                                                     before=intraday))
                      for s, q in window.live_start_positions.items())
    live_pnl, bt_pnl = pnl(live) + start_value, pnl(backtest)
    live_change = window.live_end_equity - window.start_equity
    bt_change = window.backtest_end_equity - window.start_equity
    out["unexplained remainder"] = (live_change - live_pnl) - (bt_change - bt_pnl)
    out["positions held at the start"] = start_value
    for home, trades in ((1.0, live), (-1.0, backtest)):
        for t in trades:
            r, m = prices.decision(t), prices.market(t)
            out["timing"] -= home * t.sign * t.qty * (m - r)
            out["fill prices (slippage)"] -= home * t.sign * t.qty * (t.price - m)
            out["fees"] -= home * t.fee

    def by_key(trades: list[Trade]) -> dict[tuple, list[Trade]]:
        grouped: dict[tuple, list[Trade]] = {}
        for t in trades:
            grouped.setdefault((t.key, t.symbol, t.side), []).append(t)
        return grouped

    lk, bk = by_key(live), by_key(backtest)
    effects = []
    for key in sorted(set(lk) | set(bk), key=lambda k: (_day(k[0]), k[1], k[2])):
        lt, bt = lk.get(key, []), bk.get(key, [])
        ql, qb = sum(t.qty for t in lt), sum(t.qty for t in bt)
        sample = (lt or bt)[0]
        sign, r = sample.sign, prices.decision(sample)
        decided = sign * (ql - qb) * (final[key[1]] - r)
        out["decisions" if not (lt and bt) else "sizing"] += decided
        effects.append(OrderEffect(*key, ql, sum(t.qty * t.price for t in lt) / ql if ql else None, qb,
                                   sum(t.qty * t.price for t in bt) / qb if qb else None, pnl(lt) - pnl(bt)))
    e0 = window.start_equity
    return Attribution(e0, live_change / e0, bt_change / e0, out, effects)
