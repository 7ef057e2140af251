"""What the journal itself shows went wrong, in money and in cycles, with no backtest needed: a decision that never
happened (missing cycle), a decision made twice (duplicated cycle), an account equity change that the fills and the
price moves do not explain, a position no fill explains, and an order whose id is not this strategy's (foreign).

Equity is checked between consecutive account readings: the holdings at the first reading, moved by the prices
between the two readings, plus each fill in between marked from its fill price to the second reading's price,
minus its fee, must give the second reading's equity. Prices are the ones each cycle recorded (its decision's
price map), else the closes of the data the backtest re-run used. A difference above ``tolerance`` (the larger of
$1 and 1 basis point of equity: real brokers mark at the last trade, not at the close) is a finding.

Example:
    >>> day = lambda d, eq, **kw: {"cycle_id": d, "status": "no_change", "trading_date": d,
    ...     "now": d + "T15:45:00-04:00", "decision": {"due": True}, "strategy": "s",
    ...     "inputs": {"account": {"equity": eq}, "positions": {}}, **kw}
    >>> [f.kind for f in journal_findings([day("2022-06-01", 100.0), day("2022-06-03", 250.0)])]
    ['missing cycle', 'unexplained equity']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from live.journal_read import LiveFill, decision_key, get, live_fills, moment, orders, trading_date

KINDS = ("missing cycle", "duplicated cycle", "unexplained equity", "unexplained position", "foreign order")


@dataclass(frozen=True)
class Finding:
    kind: str          # one of KINDS
    when: Any          # the trading date (or intraday slot) it concerns
    what: str          # one line saying what was seen
    amount: float | None = None  # dollars, for equity


@dataclass
class Tolerance:
    """How far a reading may be from its explanation before it is a finding."""

    dollars: float = 1.0
    fraction: float = 1e-4  # of the equity

    def of(self, equity: float) -> float:
        return max(self.dollars, self.fraction * abs(equity))


@dataclass
class CheckInputs:
    strategy: str
    ours: Callable[[str], bool]
    closes: pd.DataFrame | None = None  # the data's closes, when the backtest re-run loaded them
    tolerance: Tolerance = field(default_factory=Tolerance)


def strategy_name(records: list[dict]) -> str:
    """The strategy the journal's cycles ran (the name in its order ids)."""
    for r in records:
        name = r.get("strategy") or get(r, "inputs", "config", "strategy", "name")
        if name:
            return str(name)
    return ""


def _ours(name: str) -> Callable[[str], bool]:
    """Whether an id in the journal is this strategy's: of today's grammar (``live.orders.is_ours``), or of the
    grammar the bot wrote before its ids carried a check part (``<name>-<YYYYMMDD>[sNN]-<SYMBOL>-<buy|sell>``),
    so that a journal recorded then (the bundled sample's) still reads as the strategy's own orders.

    >>> ours = _ours("prophet-trend")
    >>> ours("prophet-trend-20220601-MRK-buy"), ours("other-bot-20220601-MRK-buy")
    (True, False)
    """
    import re

    from live.orders import _name_part, is_ours  # the id grammar has one home

    before_checks = re.compile(re.escape(_name_part(name)) + r"-\d{8}(-?s\d{2,3})?-[^-]+-(buy|sell)")
    return lambda cid: is_ours(name, cid) or before_checks.fullmatch(cid or "") is not None


def journal_findings(records: list[dict], closes: pd.DataFrame | None = None,
                     tolerance: Tolerance | None = None) -> list[Finding]:
    """Every finding of the journal, in time order (see the module's docstring)."""
    name = strategy_name(records)
    inputs = CheckInputs(name, _ours(name), closes, tolerance or Tolerance())
    out = missing_cycles(records) + duplicated_cycles(records) + foreign_orders(records, inputs)
    out += unexplained_equity(records, inputs)
    return sorted(out, key=lambda f: (pd.Timestamp(f.when), KINDS.index(f.kind)))


def decided(records: list[dict]) -> list[dict]:
    """Cycles whose cadence made (or tried) a decision."""
    return [r for r in records if get(r, "decision", "due") is True]


# ---------------------------------------------------------------- cycles

def _expected(records: list[dict]) -> list[Any]:
    """The decision keys the cadence owed between the journal's first and last cycle."""
    from brokers.calendar import NEW_YORK, MarketCalendar
    from strategies.cadence import Cadence

    timed = [r for r in records if trading_date(r) is not None and moment(r).year > 1]
    if not timed:
        return []
    config = get(timed[-1], "inputs", "config", default={})
    spec = get(timed[-1], "inputs", "config", "strategy", default={})
    try:
        cadence = Cadence.parse(spec.get("cadence"), spec.get("decision_time"))
    except (TypeError, ValueError):  # a journal of another version: no expectation rather than a wrong one
        return []
    first, last = moment(timed[0]), moment(timed[-1])
    out = []
    for session in MarketCalendar().sessions(trading_date(timed[0]), trading_date(timed[-1])):
        close = session.close.astimezone(NEW_YORK)
        if cadence.intraday:
            for slot in cadence.slots(session.open.astimezone(NEW_YORK), close,
                                      int(config.get("trade_after_open_minutes", 15)),
                                      int(config.get("trade_before_close_minutes", 5))):
                if first <= slot <= last:
                    out.append(pd.Timestamp(slot.replace(tzinfo=None)))
        else:
            at = dt.datetime.combine(session.date, cadence.decision_moment(session.date, close.time()), NEW_YORK)
            if first <= at <= last:
                out.append(session.date)
    return out


def missing_cycles(records: list[dict]) -> list[Finding]:
    """Each decision the cadence owed (a session's decision time, or an intraday slot, between the journal's first
    and last cycle) with no cycle that decided it; the statuses of that day's cycles say why."""
    have = {decision_key(r) for r in decided(records) if r.get("status") != "error"}
    out = []
    for key in _expected(records):
        if key in have:
            continue
        day = key if isinstance(key, dt.date) and not isinstance(key, pd.Timestamp) else key.date()
        seen = [f"{moment(r).astimezone(dt.timezone.utc):%H:%M}Z {r.get('status')}" for r in records
                if trading_date(r) == day and decision_key(r) == key]
        what = "that slot" if isinstance(key, pd.Timestamp) else "that day"
        out.append(Finding("missing cycle", key, f"no decision for {key}" +
                           (f" (cycles of {what}: {', '.join(seen)})" if seen else f" (no cycle {what})")))
    return out


def duplicated_cycles(records: list[dict]) -> list[Finding]:
    """Keys decided by more than one cycle that did not fail (a retry after an error is not a duplicate)."""
    by_key: dict[Any, list[dict]] = {}
    for r in decided(records):
        if r.get("status") != "error":
            by_key.setdefault(decision_key(r), []).append(r)
    return [Finding("duplicated cycle", key, f"{len(rs)} cycles decided {key}: "
                    + ", ".join(str(r.get("cycle_id")) for r in rs))
            for key, rs in by_key.items() if len(rs) > 1]


def foreign_orders(records: list[dict], inputs: CheckInputs) -> list[Finding]:
    """Orders in the journal whose client id this strategy's id grammar does not make."""
    out = []
    for r in records:
        for o in orders(r):
            cid = o.get("client_order_id")
            if not inputs.ours(str(cid or "")):
                out.append(Finding("foreign order", decision_key(r),
                                   f"{o['symbol']} {o['side']} {o.get('qty')} has id {cid!r}, not one of "
                                   f"{inputs.strategy}'s; left out of the comparison"))
    return out


# ---------------------------------------------------------------- money

def recorded_prices(record: dict) -> dict[str, float]:
    """The prices a cycle recorded: its decision's signals, then its orders' and intents' prices."""
    out: dict[str, float] = {}
    sources = [(s, v.get("price")) for s, v in (record.get("signals") or {}).items() if isinstance(v, dict)]
    sources += [(o.get("symbol"), o.get("price")) for o in orders(record)]
    sources += [(i.get("symbol"), i.get("price")) for i in get(record, "inputs", "intents", default=[]) or []
                if isinstance(i, dict)]
    for symbol, price in sources:
        if symbol and isinstance(price, (int, float)) and price == price and price > 0:
            out.setdefault(str(symbol), float(price))
    return out


def _price(record: dict, symbol: str, closes: pd.DataFrame | None) -> float | None:
    price = recorded_prices(record).get(symbol)
    if price is None and closes is not None and symbol in closes.columns:
        series = closes[symbol].dropna()
        intraday = len(series) and (series.index != series.index.normalize()).any()
        at = pd.Timestamp(moment(record)).tz_convert("America/New_York").tz_localize(None) if intraday \
            else pd.Timestamp(trading_date(record))
        upto = series.loc[series.index < at] if intraday else series.loc[:at]
        price = float(upto.iloc[-1]) if len(upto) else None
    return price


def _held(record: dict) -> dict[str, float]:
    return {s: float(p.get("qty") or 0) for s, p in (get(record, "inputs", "positions", default={}) or {}).items()
            if isinstance(p, dict) and float(p.get("qty") or 0)}


def unexplained_equity(records: list[dict], inputs: CheckInputs) -> list[Finding]:
    """Equity (and position) changes between account readings that fills and prices do not explain."""
    readings = [r for r in records if isinstance(get(r, "inputs", "account", "equity"), (int, float))]
    index = {str(r.get("cycle_id")): n for n, r in enumerate(readings)}
    # a fill happens after the reading of the cycle that sent it; an exit leg before the reading that saw it
    between: dict[int, list[LiveFill]] = {}
    for f in live_fills(records, inputs.ours):
        n = index.get(f.cycle_id)
        if n is not None:
            between.setdefault(n - 1 if f.leg else n, []).append(f)
    out = []
    if not readings:
        return out
    held = _held(readings[0])
    for n in range(len(readings) - 1):
        a, b = readings[n], readings[n + 1]
        fills = between.get(n, [])
        expect, unpriced = 0.0, []
        for symbol, qty in held.items():
            pa, pb = _price(a, symbol, inputs.closes), _price(b, symbol, inputs.closes)
            if pa is None or pb is None:
                unpriced.append(symbol)
            else:
                expect += qty * (pb - pa)
        after = dict(held)
        for f in fills:
            sign = 1.0 if f.side == "buy" else -1.0
            pb = _price(b, f.symbol, inputs.closes)
            if pb is None:
                unpriced.append(f.symbol)
            else:
                expect += sign * f.qty * (pb - f.price) - f.fee
            after[f.symbol] = after.get(f.symbol, 0.0) + sign * f.qty
        after = {s: q for s, q in after.items() if q}
        ea, eb = float(get(a, "inputs", "account", "equity")), float(get(b, "inputs", "account", "equity"))
        gap = (eb - ea) - expect
        key = decision_key(b)
        if not unpriced and abs(gap) > inputs.tolerance.of(eb):
            out.append(Finding("unexplained equity", key,
                               f"equity {ea:,.2f} -> {eb:,.2f} ({eb - ea:+,.2f}); fills and prices explain "
                               f"{expect:+,.2f}: {gap:+,.2f} unexplained", gap))
        recorded = _held(b)
        if recorded != after and get(b, "inputs", "positions") is not None:
            diff = sorted(s for s in set(recorded) | set(after) if recorded.get(s, 0) != after.get(s, 0))
            out.append(Finding("unexplained position", key,
                               "held " + ", ".join(f"{s} {recorded.get(s, 0):g}" for s in diff)
                               + "; the fills give " + ", ".join(f"{s} {after.get(s, 0):g}" for s in diff)))
        held = recorded if get(b, "inputs", "positions") is not None else after
    return out
