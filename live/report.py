"""The live report: what the bot did, from its journal. One self-contained HTML file (inline PNGs drawn with
matplotlib, as ``backtests/tearsheet.py`` draws the run tearsheet; no JavaScript, nothing fetched) and a short text
summary for the terminal.

Sections: cycles by status over time and the errors named; orders and fills; positions and account equity per
cycle; live P&L against a benchmark (the bundled S&P 500 index on the sample's dates, else an equal-weight basket
of the universe from the prices the cycles recorded); drift against the backtest, order by order in quantity and
price (``live.drift``); the journal's findings (``live.journal_checks``); and the gap between the live and the
backtest return split into its causes (``live.attribution``). Nothing here reads a strategy's own parameters.

Example:
    >>> from pathlib import Path
    >>> from live.journal_read import read_journal
    >>> report = build_report(read_journal(str(SAMPLE_JOURNAL)))
    >>> report.counts["traded"] >= 1, len(report.drift.differences) >= 1
    (True, True)
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from live.drift import Drift, backtest_drift, decision_records
from live.journal_checks import journal_findings
from live.journal_read import JournalRead, error_text, filled_qty, get, moment, orders, trading_date

SAMPLE_JOURNAL = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "sample_journal.jsonl"  # replayed
REFUSED_STATUSES = ("refused", "rejected", "error")
STATUS_ORDER = ["traded", "no_change", "dry_run", "market_closed", "busy", "unrecorded", "error"]
STATUS_COLOURS = {"traded": "tab:green", "no_change": "tab:blue", "dry_run": "tab:cyan", "market_closed": "tab:gray",
                  "busy": "tab:orange", "unrecorded": "tab:purple", "error": "tab:red"}


@dataclass
class LiveReport:
    read: JournalRead
    cycles: pd.DataFrame      # one row per cycle: time, date, status, orders, error
    orders: pd.DataFrame      # one row per order of every cycle
    equity: pd.DataFrame      # per decision day: equity, cash, positions value, benchmark
    positions: pd.DataFrame   # per decision day and symbol: qty, price, value
    benchmark_name: str
    drift: Drift

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.cycles["status"].value_counts().items()}

    @property
    def errors(self) -> pd.DataFrame:
        """What went wrong, named: cycles that failed, and single orders the broker refused (the cycle went on)."""
        c = self.cycles[self.cycles["error"] != ""]
        rows = [{"time": r.time, "what": f"cycle {r.status}", "error": r.error, "cycle_id": r.cycle_id}
                for r in c.itertuples()]
        o = self.orders
        refused = o[o["status"].isin(REFUSED_STATUSES) & (o["error"] != "")]
        rows += [{"time": r.time, "what": f"{r.symbol} {r.side} refused", "error": r.error, "cycle_id": r.cycle_id}
                 for r in refused.itertuples()]
        frame = pd.DataFrame(rows, columns=["time", "what", "error", "cycle_id"])
        return frame.sort_values("time", kind="stable").reset_index(drop=True)


def _ny(record: dict) -> pd.Timestamp:
    return pd.Timestamp(moment(record)).tz_convert("America/New_York")


def _cycles(records: list[dict]) -> pd.DataFrame:
    rows = [{"time": _ny(r), "date": trading_date(r), "status": str(r.get("status")),
             "orders": len(orders(r)), "new": sum(bool(o.get("new")) for o in orders(r)),
             "error": error_text(r) or "", "reason": str(r.get("reason") or ""), "cycle_id": r["cycle_id"]}
            for r in records]
    return pd.DataFrame(rows, columns=["time", "date", "status", "orders", "new", "error", "reason", "cycle_id"])


def _orders(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        for o in orders(r):
            rows.append({"date": trading_date(r), "time": _ny(r), "symbol": o["symbol"],
                         "side": o["side"], "qty": o.get("qty"), "status": o.get("status"), "new": bool(o.get("new")),
                         "filled_qty": filled_qty(o), "filled_avg_price": o.get("filled_avg_price"),
                         "reason": o.get("reason"), "error": o.get("error") or "",
                         "client_order_id": o.get("client_order_id"), "cycle_id": r.get("cycle_id")})
    return pd.DataFrame(rows, columns=["date", "time", "symbol", "side", "qty", "status", "new", "filled_qty",
                                       "filled_avg_price", "reason", "error", "client_order_id", "cycle_id"])


def _prices(record: dict) -> dict[str, float]:
    out = {}
    for symbol, sig in (record.get("signals") or {}).items():
        price = sig.get("price") if isinstance(sig, dict) else None
        if isinstance(price, (int, float)) and price == price:
            out[symbol] = float(price)
    return out


def _book(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Equity and positions per trading day, from the last cycle of the day that saw the account."""
    last: dict[Any, dict] = {}
    for r in records:
        if isinstance(get(r, "inputs", "account", "equity"), (int, float)):
            last[trading_date(r)] = r
    eq_rows, pos_rows = [], []
    for day, r in sorted(last.items()):
        prices = _prices(r)
        value = 0.0
        for symbol, p in (get(r, "inputs", "positions", default={}) or {}).items():
            if not isinstance(p, dict):
                continue
            qty = float(p.get("qty") or 0)
            price = prices.get(symbol, p.get("avg_entry_price"))
            mv = p.get("market_value")
            mv = float(mv) if isinstance(mv, (int, float)) else (qty * float(price) if price is not None else None)
            pos_rows.append({"date": day, "symbol": symbol, "qty": qty, "price": price, "value": mv})
            value += mv or 0.0
        eq_rows.append({"date": pd.Timestamp(day), "equity": float(get(r, "inputs", "account", "equity")),
                        "cash": float(get(r, "inputs", "account", "cash", default=0.0)), "invested": value})
    equity = pd.DataFrame(eq_rows, columns=["date", "equity", "cash", "invested"]).set_index("date")
    return equity, pd.DataFrame(pos_rows, columns=["date", "symbol", "qty", "price", "value"])


def _benchmark(equity: pd.DataFrame, records: list[dict]) -> tuple[pd.Series, str]:
    """The S&P 500 index where the bundled one covers every day; else equal weight of the recorded prices."""
    from marketdata.sample import load_sample_index

    if equity.empty:
        return pd.Series(dtype=float), ""
    index = load_sample_index()
    on = index.reindex(equity.index)
    if on.notna().all():
        return equity["equity"].iloc[0] * on / on.iloc[0], "S&P 500 index (bundled)"
    prices = {}
    for r in records:
        if trading_date(r) is not None and _prices(r):
            prices[pd.Timestamp(trading_date(r))] = _prices(r)
    frame = pd.DataFrame.from_dict(prices, orient="index").sort_index().reindex(equity.index).ffill()
    rel = (frame / frame.bfill().iloc[0]).mean(axis=1, skipna=True)
    return equity["equity"].iloc[0] * rel / rel.iloc[0], "equal weight of the universe (recorded prices)"


def build_report(read: JournalRead, drift: bool = True) -> LiveReport:
    """Every table and series the page and the summary show (``drift=False`` skips the backtest re-run)."""
    records = read.records
    equity, positions = _book(records)
    bench, name = _benchmark(equity, records)
    equity["benchmark"] = bench
    return LiveReport(read, _cycles(records), _orders(records), equity, positions, name,
                      backtest_drift(records) if drift else
                      Drift(note="not computed", findings=journal_findings(records)))


# ---------------------------------------------------------------- figures

def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def fig_statuses(report: LiveReport) -> Figure:
    """Every cycle as a dot on its status's row, over time."""
    fig = Figure(figsize=(11, 2.8), layout="constrained")
    ax = fig.subplots()
    seen = [s for s in STATUS_ORDER if s in set(report.cycles["status"])] + sorted(
        set(report.cycles["status"]) - set(STATUS_ORDER))
    for row, status in enumerate(seen):
        at = report.cycles[report.cycles["status"] == status]
        ax.scatter(at["time"].dt.tz_localize(None), [row] * len(at), color=STATUS_COLOURS.get(status, "black"), s=28)
    ax.set_yticks(range(len(seen)), [f"{s} ({(report.cycles['status'] == s).sum()})" for s in seen])
    ax.set_ylim(-0.6, len(seen) - 0.4)
    _date_axis(ax)
    ax.set_title("Cycles by status")
    ax.grid(axis="x", alpha=0.3)
    return fig


def fig_equity(report: LiveReport) -> Figure:
    """Live account equity against the benchmark (and the backtest's equity when the drift ran)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    eq = report.equity
    ax.plot(eq.index, eq["equity"], label="live equity", color="tab:blue", marker="o", ms=3)
    if eq["benchmark"].notna().any():
        ax.plot(eq.index, eq["benchmark"], label=report.benchmark_name, color="gray")
    bt = report.drift.backtest_equity
    if bt is not None and len(bt):
        # the backtest over the live readings' span only: its last point is the live data's last day
        ax.plot(bt.index, bt.to_numpy(), label="backtest of the same days", color="tab:orange", ls="--")
    _date_axis(ax)
    ax.set_title("Account equity (at each day's decision cycle)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _date_axis(ax) -> None:
    """Tick labels that never overlap, whatever the span: matplotlib's concise date formatter."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def fig_attribution(report: LiveReport) -> Figure:
    """The return gap (live minus backtest) and its components, in return points."""
    a = report.drift.attribution
    fig = Figure(figsize=(11, 3.0), layout="constrained")
    ax = fig.subplots()
    names = list(a.points) + ["gap (live - backtest)"]
    values = [v * 100 if abs(v * a.start_equity) >= 0.005 else 0.0 for v in a.points.values()] + [a.gap * 100]
    colours = ["tab:green" if v >= 0 else "tab:red" for v in values[:-1]] + ["tab:blue"]
    ax.barh(range(len(names)), values, color=colours)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    for y, v in enumerate(values):
        ax.annotate(f"{v:+.2f}", (v, y), xytext=(4 if v >= 0 else -4, 0), textcoords="offset points",
                    ha="left" if v >= 0 else "right", va="center", fontsize=8)
    ax.set_xlabel("return points (% of the starting equity)")
    ax.set_title(f"Where the gap comes from: live {_pct(a.live_return)}, backtest {_pct(a.backtest_return)}")
    ax.margins(x=0.2)
    return fig


def fig_positions(report: LiveReport) -> Figure:
    """Market value per symbol (stacked) and cash, per day."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax = fig.subplots()
    pos = report.positions.dropna(subset=["value"])
    table = pos.pivot_table(index="date", columns="symbol", values="value", aggfunc="sum") if len(pos) else None
    days = [d.date() for d in report.equity.index]
    bottom = pd.Series(0.0, index=days)
    if table is not None:
        table = table.reindex(days).fillna(0.0)
        for symbol in table.columns:
            ax.bar(range(len(days)), table[symbol], bottom=bottom.to_numpy(), label=symbol)
            bottom += table[symbol]
    ax.bar(range(len(days)), report.equity["cash"].clip(lower=0), bottom=bottom.to_numpy(), label="cash",
           color="lightgray")
    ax.set_xticks(range(len(days)), [d.strftime("%m-%d") for d in days], rotation=90, fontsize=7)
    ax.set_title("Positions and cash")
    ax.legend(loc="upper left", fontsize=7, ncol=8)
    return fig


def figures(report: LiveReport) -> dict[str, Figure]:
    """The page's figures by name (the notebook shows these)."""
    out = {"statuses": fig_statuses(report)}
    if len(report.equity):
        out["equity"] = fig_equity(report)
        out["positions"] = fig_positions(report)
    if report.drift.attribution is not None:
        out["attribution"] = fig_attribution(report)
    return out


# ---------------------------------------------------------------- text and HTML

def _pct(v: float) -> str:
    return f"{v:+.2%}" if v == v else ""


def returns(report: LiveReport) -> dict[str, float]:
    eq = report.equity
    if len(eq) < 1:
        return {}
    out = {"live": eq["equity"].iloc[-1] / eq["equity"].iloc[0] - 1}
    if eq["benchmark"].notna().any():
        out["benchmark"] = eq["benchmark"].iloc[-1] / eq["benchmark"].iloc[0] - 1
    a = report.drift.attribution
    if a is not None:  # both measured from the first decision's reading to the last reading
        out["live"], out["backtest"] = a.live_return, a.backtest_return
    return out


def summary_text(report: LiveReport) -> str:
    """The terminal's few lines: span, statuses, errors, orders, P&L, drift, unreadable records."""
    c, read = report.cycles, report.read
    lines = [f"journal     {read.source}: {len(c)} cycles, {c['time'].min():%Y-%m-%d %H:%M} to "
             f"{c['time'].max():%Y-%m-%d %H:%M} New York",
             "statuses    " + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))]
    for row in report.errors.itertuples():
        lines.append(f"error       {row.time:%Y-%m-%d %H:%M}: {row.what}: {row.error}")
    o = report.orders
    lines.append(f"orders      {len(o)} ({int((o['filled_qty'] > 0).sum())} filled, "
                 f"{int(o['status'].isin(['error', 'refused', 'rejected']).sum())} refused or failed)")
    r = returns(report)
    if r:
        lines.append(f"p&l         live {_pct(r['live'])}" + (f", {report.benchmark_name} {_pct(r['benchmark'])}"
                                                             if "benchmark" in r else "")
                     + (f", backtest {_pct(r['backtest'])}" if "backtest" in r else ""))
    d = report.drift
    if d.backtest is not None:
        kinds = pd.Series([x.kind for x in d.differences], dtype=object).value_counts()
        lines.append(f"drift       {len(d.differences)} order(s) differ from the backtest"
                     + (" (" + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ")" if len(kinds) else "")
                     + f", {d.matched} alike in quantity and price, {d.first} to {d.through}")
        for x in d.differences:
            lines.append(f"  {x.date} {x.symbol} {x.side} [{x.kind}]: live {x.live}, backtest {x.backtest}; {x.reason}")
    lines.append(f"findings    {len(d.findings)}" + ("" if d.findings else " (no missing or duplicated cycle, "
                                                      "no unexplained equity, no foreign order)"))
    for f in d.findings:
        lines.append(f"  {f.when} {f.kind}: {f.what}")
    if d.attribution is not None:
        lines += attribution_lines(d.attribution)
    if d.note:
        lines.append(f"drift note  {d.note}")
    if read.unreadable:
        lines.append(f"unreadable  {len(read.unreadable)} record(s): "
                     + "; ".join(f"{u.where} ({u.why})" for u in read.unreadable[:5])
                     + (" ..." if len(read.unreadable) > 5 else ""))
    return "\n".join(lines)


def attribution_frame(a) -> pd.DataFrame:
    """The attribution table: each component in dollars and return points, then the gap they sum to."""
    clean = lambda v: v if abs(v) >= 0.005 else 0.0  # noqa: E731  (no "-0.00" for a float residue)
    rows = [{"component": k, "dollars": clean(v), "points": f"{clean(v) / a.start_equity:+.4%}"}
            for k, v in a.dollars.items()]
    rows.append({"component": "gap (live - backtest)", "dollars": a.gap_dollars, "points": f"{a.gap:+.4%}"})
    return pd.DataFrame(rows, columns=["component", "dollars", "points"])


def attribution_lines(a) -> list[str]:
    lines = [f"gap         live {_pct(a.live_return)} - backtest {_pct(a.backtest_return)} = {a.gap * 100:+.4f} "
             f"points ({a.gap_dollars:+,.2f} on {a.start_equity:,.2f}):"]
    for row in attribution_frame(a).itertuples(index=False):
        lines.append(f"  {row.component:<30}{row.dollars:>+14,.2f}{row.points:>11}")
    return lines


def _table(frame: pd.DataFrame, id_: str) -> str:
    head = "".join(f"<th>{html.escape(str(col))}</th>" for col in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                text = "" if v != v else f"{v:,.2f}"
            elif isinstance(v, pd.Timestamp):
                text = f"{v:%Y-%m-%d %H:%M}"
            else:
                text = "" if v is None else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{id_}"><tr>{head}</tr>{"".join(body)}</table>'


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{padding:.2em .6em;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left;white-space:nowrap}
.muted{color:#666;font-size:.9em}
.warn{background:#fff3cd;border:1px solid #e0c068;padding:.4em .8em;margin:.6em 0}img{max-width:100%}
.scroll{max-height:28em;overflow:auto}"""


def render(report: LiveReport) -> str:
    """The whole page as one HTML string."""
    figs = {k: f'<img id="fig-{k}" alt="{k}" src="data:image/png;base64,{_png(f)}">'
            for k, f in figures(report).items()}
    c, d = report.cycles, report.drift
    warn = ""
    if report.read.unreadable:
        items = "".join(f"<li>{html.escape(u.where)}: {html.escape(u.why)}</li>" for u in report.read.unreadable)
        warn = (f'<div class="warn" id="unreadable">{len(report.read.unreadable)} record(s) could not be read and are '
                f'left out:<ul>{items}</ul></div>')
    errors = report.errors
    o = report.orders.drop(columns=["time", "cycle_id"])
    per_cycle = report.equity.reset_index()
    held = report.positions.groupby("date").apply(
        lambda g: ", ".join(f"{s} {q:g}" for s, q in zip(g["symbol"], g["qty"])), include_groups=False) \
        if len(report.positions) else pd.Series(dtype=str)
    per_cycle["positions"] = [held.get(day.date(), "") for day in per_cycle["date"]]
    per_cycle["date"] = [day.date() for day in per_cycle["date"]]
    r = returns(report)
    pnl = "".join(f"<tr><td>{html.escape(k)}</td><td>{_pct(v)}</td></tr>" for k, v in
                  [("live", r.get("live", float("nan"))), (report.benchmark_name, r.get("benchmark", float("nan"))),
                   ("backtest of the same days", r.get("backtest", float("nan")))] if v == v)
    if d.backtest is not None:
        diffs = pd.DataFrame([vars(x) for x in d.differences], columns=["date", "symbol", "side", "kind", "live",
                                                                        "backtest", "reason"])
        drift_html = (f"<p>Backtest of <b>{html.escape(d.strategy)}</b> with the journal's own config, from "
                      f"{d.first} to {d.through} on the same data: <b>{len(d.differences)}</b> order(s) differ; "
                      f"{d.matched} filled alike in quantity and price.</p>"
                      + (_table(diffs, "drift") if len(diffs) else '<p id="drift">No differences.</p>'))
    else:
        drift_html = '<p id="drift">Not compared.</p>'
    found = pd.DataFrame([vars(f) for f in d.findings], columns=["when", "kind", "what", "amount"])
    drift_html += "<h3>Findings in the journal</h3>" + (_table(found, "findings") if len(found) else
                                                         '<p id="findings">No missing or duplicated cycle, no '
                                                         'unexplained equity change, no foreign order.</p>')
    if d.attribution is not None:
        a = d.attribution
        drift_html += (f"<h3>Where the gap comes from</h3><p>Live {_pct(a.live_return)} against the backtest's "
                       f"{_pct(a.backtest_return)}: a gap of {a.gap * 100:+.4f} points, split exactly (method in "
                       f"docs/reports.md).</p>" + figs.get("attribution", "")
                       + _table(attribution_frame(a), "attribution"))
    if d.note:
        drift_html += f'<p class="muted">{html.escape(d.note)}</p>'
    span = f"{c['time'].min():%Y-%m-%d} to {c['time'].max():%Y-%m-%d}"
    title = f"Live report: {len(c)} cycles, {span}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    replayed = sum(bool(rec.get("replayed")) for rec in report.read.records)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">Journal {html.escape(report.read.source)}; {counts}; {len(decision_records(report.read.records))}
decision cycles{f"; {replayed} replayed (not real trading)" if replayed else ""}. Times in New York.</p>
{warn}
<h2>Cycles by status</h2>{figs['statuses']}
<h3>Errors</h3>{_table(errors, "errors") if len(errors) else '<p id="errors">None.</p>'}
<h2>Live P&amp;L against the benchmark</h2>{figs.get('equity', '<p>No account recorded.</p>')}
<table id="pnl"><tr><th></th><th>return</th></tr>{pnl}</table>
<h2>Drift against the backtest</h2>{drift_html}
<h2>Positions and equity per day</h2>{figs.get('positions', '')}
<div class="scroll">{_table(per_cycle, "per-cycle")}</div>
<h2>Orders and fills</h2><div class="scroll">{_table(o, "orders")}</div>
<p class="muted">Equity is the account's at each day's last cycle that read it (before that cycle's orders);
position values use the prices the cycle decided on.</p>
</body></html>
"""


def write_report(report: LiveReport, out: Path) -> tuple[Path, Path]:
    """``live_report.html`` and ``live_summary.txt`` in ``out``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    page, text = out / "live_report.html", out / "live_summary.txt"
    page.write_text(render(report), encoding="utf-8")
    text.write_text(summary_text(report) + "\n", encoding="utf-8")
    return page, text
