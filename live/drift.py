"""Drift against the backtest: re-run the backtest of the journal's own strategy, config, days and data, and list
every (decision date, symbol, side) where live and the backtest differ, with the reason when the journal tells it.

The two homes make the same decisions on the same data (tests/test_strategy_interface.py, test_live_parity.py),
so what is listed here is what happened live and not in the model: a refused order, a symbol the rules skipped, a
day without a decision, a partial fill, and what followed from them (a later order of the same symbol).

Inputs read from each record: ``inputs.config.strategy`` (the StrategyConfig mapping), ``inputs.config``'s
``paper_commission``/``broker``/``market_data``, ``inputs.account.equity`` and ``inputs.positions`` of the first
decision, ``provenance.universe`` and ``provenance.data.source``, ``orders``, ``skipped``, ``inputs.intents``.

Example:
    >>> backtest_drift([]).note
    'no cycle in the journal made a decision'
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import backtrader  # noqa: F401  (research-only: the re-run is a Backtrader backtest; keeps this out of the function zip)
import pandas as pd

from live.journal_read import error_text, filled_qty, get, orders, trading_date

FAILED = ("error", "refused", "rejected")


@dataclass(frozen=True)
class Difference:
    date: dt.date
    symbol: str
    side: str
    live: str      # what live did ("filled 274 @ 172.84", "refused", "nothing")
    backtest: str  # what the backtest did
    reason: str


@dataclass
class Drift:
    differences: list[Difference] = field(default_factory=list)
    matched: int = 0                      # (date, symbol, side) filled in both homes
    first: dt.date | None = None
    through: dt.date | None = None        # the last decision date compared
    note: str = ""                        # why nothing (or less) was compared
    backtest: Any = None                  # the BacktestResult, when it ran
    strategy: str = ""


def decision_records(records: list[dict]) -> list[dict]:
    """Cycles that reached the strategy's decision (or tried to): they carry the config and a due decision."""
    return [r for r in records if get(r, "decision", "due") is True and get(r, "inputs", "config", "strategy")]


def _fill(order: dict) -> str:
    price = order.get("filled_avg_price")
    qty = filled_qty(order)
    return f"filled {qty:g}" + (f" @ {float(price):.2f}" if isinstance(price, (int, float)) else "")


def _data(first: dict, symbols: list[str], end: dt.date, bars: int):
    from marketdata.sample import SAMPLE_SOURCE, load_sample

    if get(first, "provenance", "data", "source") == SAMPLE_SOURCE:
        return load_sample().select([s for s in symbols if s in load_sample().symbols])
    from marketdata.provider import open_provider

    spec = get(first, "inputs", "config", "market_data", default="sample")
    return open_provider(spec).history(symbols, end=end, bars=bars, strict=False)


def backtest_drift(records: list[dict]) -> Drift:
    """Backtest the journal's strategy over its decision days and compare (date, symbol, side) with live."""
    from backtests.backtest import BacktestConfig, run_backtest
    from brokers.calendar import MarketCalendar
    from strategies.config import StrategyConfig

    decided = decision_records(records)
    if not decided:
        return Drift(note="no cycle in the journal made a decision")
    first = decided[0]
    mapping = get(first, "inputs", "config", "strategy")
    same = [r for r in decided if get(r, "inputs", "config", "strategy") == mapping]
    drift = Drift(strategy=str(mapping.get("name") or mapping.get("strategy")))
    if len(same) < len(decided):
        drift.note = (f"the strategy config changed on {trading_date(decided[len(same)])}: compared up to then. ")
        same = [r for r in decided if trading_date(r) < trading_date(decided[len(same)])]
    try:
        config = StrategyConfig.from_mapping(mapping)
    except Exception as exc:  # a user's strategy file that is not here, say
        drift.note += f"the strategy cannot be rebuilt here: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
        return drift
    strategy = config.build()
    days = sorted({trading_date(r) for r in same})
    start, last = days[0], days[-1]
    calendar = MarketCalendar()
    after = calendar.sessions(last + dt.timedelta(days=1), last + dt.timedelta(days=10))
    symbols = list(get(first, "provenance", "universe", default=None) or get(first, "inputs", "config", "universe",
                                                                              default=[]))
    bars = strategy.warmup_bars + len(calendar.sessions(start, last)) + 10
    try:
        data = _data(first, symbols, after[0].date if after else last, bars)
    except Exception as exc:
        drift.note += f"no prices for the backtest: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
        return drift
    # The backtest fills a decision on the next bar: without one, the last day's decisions cannot be compared.
    through = last
    end = last
    if after and pd.Timestamp(after[0].date) in data.closes.index:
        end = after[0].date
    else:
        earlier = [d for d in days if d < last]
        if not earlier:
            drift.note += f"the data has no bar after {last}, so the backtest cannot fill its decisions"
            return drift
        through = earlier[-1]
        drift.note += f"the data has no bar after {last}: compared through {through}. "
    account = get(first, "inputs", "account", default={})
    cash = float(account.get("equity") or get(first, "inputs", "config", "paper_cash", default=100_000.0))
    paper = get(first, "inputs", "config", "broker") == "paper"
    commission = float(get(first, "inputs", "config", "paper_commission", default=0.0)) if paper else 0.0
    held = {s: p.get("qty") for s, p in (get(first, "inputs", "positions", default={}) or {}).items()
            if isinstance(p, dict) and p.get("qty")}
    if held:
        drift.note += ("live began holding " + ", ".join(f"{s} {q:g}" for s, q in held.items())
                       + "; the backtest begins in cash at the same equity. ")
    try:
        result = run_backtest(data, strategy, BacktestConfig(start=str(start), end=str(end), cash=cash,
                                                             commission=commission, benchmark="equal-weight",
                                                             rules=config.rules))
    except Exception as exc:
        drift.note += f"the backtest did not run: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
        return drift
    drift.backtest, drift.first, drift.through = result, start, through
    drift.differences, drift.matched = compare(same, result, start, through)
    drift.note = drift.note.strip()
    return drift


def compare(records: list[dict], result, start: dt.date, through: dt.date) -> tuple[list[Difference], int]:
    """The (date, symbol, side) differences between live ``records`` and the backtest ``result``."""
    by_day: dict[dt.date, list[dict]] = {}
    for r in records:
        by_day.setdefault(trading_date(r), []).append(r)
    live: dict[tuple, dict] = {}
    tried: dict[tuple, dict] = {}  # orders sent or found but not filled, and why
    for day, rs in by_day.items():
        for r in rs:
            for o in orders(r):
                key = (day, o["symbol"], o["side"])
                if filled_qty(o) > 0:
                    live[key] = o
                else:
                    tried.setdefault(key, {**o, "_cycle": r})
    trades = result.trades
    backtest: dict[tuple, dict] = {}
    for row in trades.itertuples(index=False):
        day = pd.Timestamp(row.decision_date).date()
        key = (day, row.symbol, row.side)
        got = backtest.setdefault(key, {"qty": 0.0, "value": 0.0})
        got["qty"] += abs(float(row.qty))
        got["value"] += abs(float(row.value))
    in_window = lambda key: start <= key[0] <= through  # noqa: E731
    failures = sorted((k for k, o in tried.items() if str(o.get("status")) in FAILED or o.get("error")),
                      key=lambda k: k[0])

    def follows(key) -> str | None:
        earlier = [k for k in failures if k[1] == key[1] and k[0] < key[0]]
        if earlier:
            d, s, side = earlier[-1]
            return f"follows the refused {side} of {s} on {d}"
        return None

    def bt_text(key) -> str:
        b = backtest.get(key)
        return f"filled {b['qty']:g} @ {b['value'] / b['qty']:.2f}" if b else "nothing"

    out: list[Difference] = []
    for key in sorted(set(backtest) - set(live), key=str):
        if not in_window(key):
            continue
        day, symbol, side = key
        rs = by_day.get(day, [])
        o = tried.get(key)
        skipped = [s for r in rs for s in (r.get("skipped") or []) if isinstance(s, dict)
                   and s.get("symbol") == symbol and s.get("side") == side]
        intents = [i for r in rs for i in (get(r, "inputs", "intents", default=[]) or [])
                   if isinstance(i, dict) and i.get("symbol") == symbol and i.get("side") == side]
        if o is not None and (str(o.get("status")) in FAILED or o.get("error")):
            reason, did = f"refused by the broker: {o.get('error') or o.get('status')}", "refused"
        elif o is not None:
            reason, did = f"not filled live (status {o.get('status')})", str(o.get("status"))
        elif skipped:
            reason, did = f"skipped by the rules live: {skipped[0].get('reason')}", "skipped"
        elif intents and any(r.get("status") == "error" for r in rs):
            err = next(error_text(r) for r in rs if r.get("status") == "error")
            reason, did = f"not sent: the cycle stopped ({err})", "not sent"
        elif not rs:
            reason, did = "no live decision that day", "no decision"
        else:
            reason, did = follows(key) or "unknown (live decided otherwise)", "nothing"
        out.append(Difference(day, symbol, side, did, bt_text(key), reason))
    rejected = {(pd.Timestamp(r.decision_date).date(), r.symbol, r.side): r.status
                for r in result.rejected.itertuples(index=False) if r.decision_date is not None}
    skipped_bt = {(pd.Timestamp(r.decision_date).date(), r.symbol, r.side): r.reason
                  for r in (result.skipped if result.skipped is not None else pd.DataFrame()).itertuples(index=False)}
    for key in sorted(set(live) - set(backtest), key=str):
        if not in_window(key):
            continue
        if key in rejected:
            reason = f"the backtest's order was {rejected[key]}"
        elif key in skipped_bt:
            reason = f"skipped by the rules in the backtest: {skipped_bt[key]}"
        else:
            reason = follows(key) or "unknown (the backtest decided otherwise)"
        out.append(Difference(*key, _fill(live[key]), "nothing", reason))
    matched = 0
    for key in sorted(set(live) & set(backtest), key=str):
        if not in_window(key):
            continue
        o = live[key]
        want = float(o.get("qty") or 0)
        if want and filled_qty(o) < want:
            out.append(Difference(*key, _fill(o), bt_text(key), f"a different fill: {filled_qty(o):g} of {want:g} "
                                                                  f"filled live (status {o.get('status')})"))
        else:
            matched += 1
    out.sort(key=lambda d: (d.date, d.symbol, d.side))
    return out, matched
