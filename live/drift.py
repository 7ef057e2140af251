"""Drift against the backtest, in money: re-run the backtest of the journal's own strategy, config, days and data,
and compare every order (decision, symbol, side, quantity and price) between live and the backtest; add what the
journal shows on its own (``live.journal_checks``: missing and duplicated cycles, equity no fill explains, foreign
ids) and split the gap between the live and the backtest return into its causes (``live.attribution``).

The two homes make the same decisions on the same data (tests/test_strategy_interface.py, test_live_parity.py),
so what is listed here is what happened live and not in the model: a refused order, a symbol the rules skipped, a
day without a decision, a partial fill, a different fill price or quantity, and what followed from them.

Inputs read from each record: ``inputs.config.strategy`` (the StrategyConfig mapping), ``inputs.config``'s
``execution`` (the fill moment and costs the cycle ran with; ``live.journal_read.execution_of`` reads a record
from before it was recorded), ``broker``/``market_data``, ``inputs.account`` and ``inputs.positions``, ``provenance.universe``
and ``provenance.data.source``, ``orders``, ``ledger.new_fills``, ``skipped``, ``inputs.intents``.

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

from live.attribution import Attribution, AttributionWindow, Trade, attribute, price_at
from live.journal_checks import Finding, _ours, journal_findings, strategy_name
from live.journal_read import (
    LiveFill, decision_key, error_text, execution_of, filled_qty, get, live_fills, orders, trading_date,
)

FAILED = ("error", "refused", "rejected")
PRICE_TOLERANCE = 0.005  # half a cent: prices that round to the same cent are the same price


@dataclass(frozen=True)
class Difference:
    date: Any      # the decision: a date (daily) or an intraday slot
    symbol: str
    side: str
    live: str      # what live did ("filled 274 @ 172.84", "refused", "nothing")
    backtest: str  # what the backtest did
    reason: str
    kind: str = "decision"  # decision (one home only) | quantity | price | quantity and price | partial fill


@dataclass
class Drift:
    differences: list[Difference] = field(default_factory=list)
    matched: int = 0                      # orders filled alike: same decision, symbol, side, quantity and price
    first: dt.date | None = None
    through: dt.date | None = None        # the last decision date compared
    note: str = ""                        # why nothing (or less) was compared
    backtest: Any = None                  # the BacktestResult, when it ran
    strategy: str = ""
    findings: list[Finding] = field(default_factory=list)  # what the journal shows on its own
    attribution: Attribution | None = None
    backtest_equity: pd.Series | None = None  # the backtest's equity over the live readings' span, same end point
    execution: Any = None                 # the execution model the backtest re-ran with: the live cycles' own


def decision_records(records: list[dict]) -> list[dict]:
    """Cycles that reached the strategy's decision (or tried to): they carry the config and a due decision."""
    return [r for r in records if get(r, "decision", "due") is True and get(r, "inputs", "config", "strategy")]


def _fill(qty: float, price: float | None) -> str:
    return f"filled {qty:g}" + (f" @ {price:.2f}" if price is not None else "")


def _data(first: dict, symbols: list[str], end: dt.date, bars: int):
    from marketdata.sample import SAMPLE_SOURCE, load_sample

    if get(first, "provenance", "data", "source") == SAMPLE_SOURCE:
        return load_sample().select([s for s in symbols if s in load_sample().symbols])
    from marketdata.provider import open_provider

    spec = get(first, "inputs", "config", "market_data", default="sample")
    return open_provider(spec).history(symbols, end=end, bars=bars, strict=False)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _key_of(value: Any, intraday: bool) -> Any:
    t = pd.Timestamp(value)
    return t if intraday else t.date()


def backtest_trades(result, intraday: bool) -> list[Trade]:
    """The backtest's fills as :class:`~live.attribution.Trade` (keyed by decision, like live's)."""
    out = []
    for row in result.trades.itertuples(index=False):
        if row.decision_date is None or row.decision_date != row.decision_date:
            continue
        out.append(Trade(_key_of(row.decision_date, intraday), str(row.symbol), str(row.side), abs(float(row.qty)),
                         float(row.price), float(row.commission or 0.0), _key_of(row.date, intraday)))
    return out


def live_trades(fills: list[LiveFill]) -> list[Trade]:
    return [Trade(f.key, f.symbol, f.side, f.qty, f.price, f.fee, f.fill_date or f.key) for f in fills]


def backtest_drift(records: list[dict]) -> Drift:
    """Backtest the journal's strategy over its decision days; compare every order and attribute the return gap."""
    from backtests.backtest import BacktestConfig, run_backtest
    from brokers.calendar import MarketCalendar
    from strategies.config import StrategyConfig

    decided = decision_records(records)
    if not decided:
        return Drift(note="no cycle in the journal made a decision", findings=journal_findings(records))
    first = decided[0]
    mapping = get(first, "inputs", "config", "strategy")
    same = [r for r in decided if get(r, "inputs", "config", "strategy") == mapping]
    drift = Drift(strategy=str(mapping.get("name") or mapping.get("strategy")))
    if len(same) < len(decided):
        drift.note = (f"the strategy config changed on {trading_date(decided[len(same)])}: compared up to then. ")
        same = [r for r in decided if trading_date(r) < trading_date(decided[len(same)])]
    in_span = [r for r in records if trading_date(r) is not None and trading_date(r) <= trading_date(same[-1])] \
        if len(same) < len(decided) else records
    try:
        config = StrategyConfig.from_mapping(mapping)
        strategy = config.build()
    except Exception as exc:  # a user's strategy file that is not here, say
        drift.note += f"the strategy cannot be rebuilt here: {_first_line(exc)}"
        drift.findings = journal_findings(records)
        return drift
    days = sorted({trading_date(r) for r in same})
    start, last = days[0], days[-1]
    calendar = MarketCalendar()
    after = calendar.sessions(last + dt.timedelta(days=1), last + dt.timedelta(days=10))
    symbols = list(get(first, "provenance", "universe", default=None) or get(first, "inputs", "config", "universe",
                                                                              default=[]))
    symbols += sorted({o["symbol"] for r in same for o in orders(r)} - set(symbols))  # holdings outside the universe
    bars = strategy.warmup_bars + len(calendar.sessions(start, last)) + 10
    try:
        data = _data(first, symbols, after[0].date if after else last, bars)
    except Exception as exc:
        drift.note += f"no prices for the backtest: {_first_line(exc)}"
        drift.findings = journal_findings(records)
        return drift
    drift.findings = journal_findings(in_span, data.closes)
    # With a next-bar fill model the last day's decisions fill on the bar after it: run through that bar if any.
    end = after[0].date if after and pd.Timestamp(after[0].date) in data.closes.index else last
    account = get(first, "inputs", "account", default={})
    cash = float(account.get("equity") or get(first, "inputs", "config", "paper_cash", default=100_000.0))
    try:  # the execution model the live cycles ran with (fill moment, commission, slippage, regulatory fees)
        model = execution_of(first)
    except (TypeError, ValueError) as exc:
        drift.note += f"the journal's execution model cannot be read: {_first_line(exc)}"
        return drift
    drift.execution = model
    held = {s: float(p.get("qty")) for s, p in (get(first, "inputs", "positions", default={}) or {}).items()
            if isinstance(p, dict) and p.get("qty")}
    if held:
        drift.note += ("live began holding " + ", ".join(f"{s} {q:g}" for s, q in held.items())
                       + "; the backtest begins in cash at the same equity. ")
    try:
        result = run_backtest(data, strategy, BacktestConfig(
            start=str(start), end=str(end), cash=cash, benchmark="equal-weight", rules=config.rules,
            fill=model.fill, commission=model.costs.commission, slippage_bps=model.costs.slippage_bps,
            costs=model.costs.regulatory))
    except Exception as exc:
        drift.note += f"the backtest did not run: {_first_line(exc)}"
        return drift
    intraday = bool(getattr(data, "intraday", False))
    bt = backtest_trades(result, intraday)
    same_bar = any(pd.Timestamp(t.fill_date) == pd.Timestamp(t.key) for t in bt)
    through = last
    if end == last and not same_bar:
        earlier = [d for d in days if d < last]
        if not earlier:
            drift.note += f"the data has no bar after {last}, so the backtest cannot fill its decisions"
            return drift
        through = earlier[-1]
        drift.note += f"the data has no bar after {last}: compared through {through}. "
    drift.backtest, drift.first, drift.through = result, start, through
    fills = live_fills(in_span, _ours(strategy_name(records) or drift.strategy))
    try:
        drift.differences, drift.matched = compare(same, fills, bt, result, start, through)
        drift.attribution, drift.backtest_equity = _attribution(in_span, same, fills, bt, result, data, held,
                                                                intraday)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a journal shape not foreseen: said, not a crash
        drift.note += f"the comparison stopped: {type(exc).__name__}: {_first_line(exc)}"
    drift.note = drift.note.strip()
    return drift


def _attribution(records, same, fills, bt, result, data, held, intraday) -> tuple[Attribution | None, Any]:
    """The return gap over the live account readings' span (first decision to last reading), split."""
    readings = [r for r in records if isinstance(get(r, "inputs", "account", "equity"), (int, float))
                and trading_date(r) is not None and trading_date(r) >= trading_date(same[0])]
    if not readings:
        return None, None
    first, last = readings[0], readings[-1]
    start_key, end_key = decision_key(first), decision_key(last)
    end_bar = pd.Timestamp(end_key if intraday else trading_date(last))
    live = [t for t in live_trades(fills) if (t.key >= start_key) and (t.key < end_key or
                                                                        (t.key == end_key and _leg(t, fills)))]
    # What had happened by the last reading. Daily: that day's bar, fills on it included. Intraday: the backtest's
    # row at a slot is the book at that moment (marked at the bars complete then), before the slot's own fills.
    done = (lambda at: pd.Timestamp(at) < end_bar) if intraday else (lambda at: pd.Timestamp(at) <= end_bar)
    inside = [t for t in bt if done(t.fill_date)]
    later = [t for t in inside if t.key >= end_key]  # live had not sent these when it read its account
    equity = result.equity["equity"].loc[:end_bar]
    if not len(equity):
        return None, None
    prices = data.closes
    try:
        final = {t.symbol: price_at(prices, t.symbol, end_bar, before=intraday) for t in later}
    except KeyError:  # a traded symbol without a close at the end: no split rather than a guess
        return None, equity
    bt_end = float(equity.iloc[-1]) - sum(t.sign * t.qty * (final[t.symbol] - t.price) - t.fee for t in later)
    window = AttributionWindow(float(get(first, "inputs", "account", "equity")),
                               float(get(last, "inputs", "account", "equity")), bt_end, end_bar,
                               pd.Timestamp(start_key if intraday else trading_date(first)), held)
    shown = equity.copy()
    shown.iloc[-1] = bt_end
    try:
        return attribute(live, [t for t in inside if t.key < end_key], prices, window, data.opens, intraday), shown
    except KeyError:
        return None, shown


def _leg(t: Trade, fills: list[LiveFill]) -> bool:
    return any(f.leg and f.key == t.key and f.symbol == t.symbol for f in fills)


def compare(records: list[dict], fills: list[LiveFill], bt: list[Trade], result, start, through
            ) -> tuple[list[Difference], int]:
    """Every order that differs between live ``fills`` and the backtest's trades ``bt`` in the window: one home
    only (with the journal's reason), or a different quantity or price; and how many were alike."""
    by_day: dict[Any, list[dict]] = {}
    for r in records:
        by_day.setdefault(decision_key(r), []).append(r)
    live: dict[tuple, dict] = {}
    for f in fills:
        got = live.setdefault((f.key, f.symbol, f.side), {"qty": 0.0, "value": 0.0, "days": set(), "want": 0.0})
        got["qty"] += f.qty
        got["value"] += f.qty * f.price
        got["days"].add(f.fill_date)
    tried: dict[tuple, dict] = {}  # orders sent or found, and what became of them
    for day, rs in by_day.items():
        for r in rs:
            for o in orders(r):
                key = (day, o["symbol"], o["side"])
                if key in live:
                    live[key]["want"] = max(live[key]["want"], float(o.get("qty") or 0))
                    live[key]["status"] = o.get("status")
                elif filled_qty(o) <= 0:
                    tried.setdefault(key, {**o, "_cycle": r})
    backtest: dict[tuple, dict] = {}
    for t in bt:
        got = backtest.setdefault((t.key, t.symbol, t.side), {"qty": 0.0, "value": 0.0, "days": set()})
        got["qty"] += t.qty
        got["value"] += t.qty * t.price
        got["days"].add(t.fill_date)

    def day_of(key) -> dt.date:
        return key.date() if isinstance(key, pd.Timestamp) else key

    in_window = lambda key: start <= day_of(key[0]) <= through  # noqa: E731
    failures = sorted((k for k, o in tried.items() if str(o.get("status")) in FAILED or o.get("error")),
                      key=lambda k: pd.Timestamp(k[0]))

    def follows(key) -> str | None:
        earlier = [k for k in failures if k[1] == key[1] and pd.Timestamp(k[0]) < pd.Timestamp(key[0])]
        if earlier:
            d, s, side = earlier[-1]
            return f"follows the refused {side} of {s} on {d}"
        return None

    def text(got: dict | None) -> str:
        return _fill(got["qty"], got["value"] / got["qty"]) if got else "nothing"

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
        out.append(Difference(day, symbol, side, did, text(backtest[key]), reason))
    intraday = any(isinstance(t.key, pd.Timestamp) for t in bt)
    rejected = {(_key_of(r.decision_date, intraday), r.symbol, r.side): r.status
                for r in result.rejected.itertuples(index=False) if r.decision_date is not None}
    skipped_bt = {(_key_of(r.decision_date, intraday), r.symbol, r.side): r.reason
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
        out.append(Difference(*key, text(live[key]), "nothing", reason))
    matched = 0
    for key in sorted(set(live) & set(backtest), key=str):
        if not in_window(key):
            continue
        lo, bo = live[key], backtest[key]
        lp, bp = lo["value"] / lo["qty"], bo["value"] / bo["qty"]
        kinds, why = [], []
        if lo["want"] and lo["qty"] < lo["want"]:
            why = f"a different fill: {lo['qty']:g} of {lo['want']:g} filled live (status {lo.get('status')})"
            out.append(Difference(*key, text(lo), text(bo), why, "partial fill"))
            continue
        if lo["qty"] != bo["qty"]:
            kinds.append("quantity")
            why.append(f"{lo['qty']:g} shares live, {bo['qty']:g} in the backtest ({lo['qty'] - bo['qty']:+g})")
        if abs(lp - bp) > PRICE_TOLERANCE:
            kinds.append("price")
            when = lambda got: ", ".join(str(d) for d in sorted(got["days"], key=pd.Timestamp))  # noqa: E731
            why.append(f"{lp:.3f} live (filled {when(lo)}), {bp:.3f} in the backtest (filled {when(bo)}): "
                       f"{(lp - bp) / bp * 1e4:+.1f} bp")
        if kinds:
            out.append(Difference(*key, text(lo), text(bo), "; ".join(why), " and ".join(kinds)))
        else:
            matched += 1
    out.sort(key=lambda d: (pd.Timestamp(d.date), d.symbol, d.side))
    return out, matched
