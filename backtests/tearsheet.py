"""``report.html``: a one-file tearsheet of a run, readable offline.

Drawn with matplotlib (already a dependency) and embedded as base64 PNG, with plain HTML tables and CSS only: no
JavaScript, no CDN, no fonts or files fetched, so the page opens from a mail attachment or an air-gapped disk.
The log-scale switch of the equity chart is a CSS checkbox between two pre-drawn images. Every number comes
from :mod:`backtests.metrics` and :mod:`backtests.round_trips` (the tests recompute them with quantstats and
empyrical).

Example:
    >>> import pickle, tempfile, pathlib  # doctest: +SKIP
    >>> write_tearsheet(result, pathlib.Path(tempfile.mkdtemp()) / "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtests import metrics, round_trips as rt
from backtests.backtest import BacktestResult
from backtests.bar_axis import BarAxis

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: a --no-plot run never loads it (0.5 s)
    from matplotlib.figure import Figure

ROLLING_BARS = 63  # a quarter of trading days
BETA_BARS = 126  # half a year, as quantstats' rolling beta
MIN_ROLLING = 5  # a shorter run gets a window of a third of its sessions, never under this
TOP_DRAWDOWNS = 5
TITLE_PARAMS = 6  # parameters named in a title; the rest are in summary.json


def rolling_window(sessions: int, preferred: int = ROLLING_BARS) -> int:
    """The rolling window a run can fill: ``preferred`` sessions, or a third of a shorter run (at least 5), so
    a two-week intraday run still draws its rolling panels.

    >>> rolling_window(500), rolling_window(30), rolling_window(6)
    (63, 10, 5)
    """
    return preferred if sessions >= 2 * preferred else max(MIN_ROLLING, sessions // 3)


def run_title(summary: dict[str, Any]) -> str:
    """The strategy's name, the window, the universe's size and its first parameters: any strategy's.

    >>> run_title({"strategy": {"name": "ma-crossover", "params": {"fast": 5, "slow": 20}}, "start": "2022-01-03",
    ...            "end": "2022-06-30", "symbols": ["A", "B"]})
    'ma-crossover 2022-01-03 to 2022-06-30: 2 symbols; fast=5, slow=20'
    """
    strategy = summary.get("strategy") or {}
    params = strategy.get("params", summary.get("params")) or {}
    shown = [f"{k}={v}" for k, v in list(params.items())[:TITLE_PARAMS]]
    more = f", ... ({len(params) - TITLE_PARAMS} more)" if len(params) > TITLE_PARAMS else ""
    return (f"{strategy.get('name', 'strategy')} {summary['start']} to {summary['end']}: {len(summary['symbols'])} "
            f"symbols" + (f"; {', '.join(shown)}{more}" if shown else ""))


def benchmark_label(summary: dict[str, Any]) -> str:
    """A short name for the benchmark: ``equal-weight (5 symbols)`` rather than every symbol listed.

    >>> benchmark_label({"benchmark": {"name": "equal-weight buy-and-hold of A,B,C"}, "symbols": ["A", "B", "C"]})
    'equal-weight (3 symbols)'
    """
    name = str(summary["benchmark"]["name"])
    if name.startswith("equal-weight"):
        return f"equal-weight ({len(summary['symbols'])} symbols)"
    return name[:40]


def run_statistics(result: BacktestResult, rule: rt.ConcentrationRule = rt.ConcentrationRule()) -> dict[str, Any]:
    """The tearsheet's statistics, as ``summary.json`` stores them (merged into ``result.summary`` by the run)."""
    parts = _parts(result, rule)
    return parts["stats"]


def _parts(result: BacktestResult, rule: rt.ConcentrationRule) -> dict[str, Any]:
    eq = result.equity
    cash = float(result.summary.get("config", {}).get("cash", eq["equity"].iloc[0]))
    moved, closes = rt.on_equity_clock(result.trades, result.closes, eq.index, result.summary.get("interval"))
    book = rt.replay(moved, closes, eq, cash)
    trips = rt.round_trips(result.trades, closes)
    per_symbol = rt.by_symbol(trips, book)
    conc = rt.concentration(book)
    closed = trips[trips["status"] == "closed"]
    trip_pnl = closed["trip_pnl"] if len(closed) else pd.Series(dtype="float64")
    wins, losses = trip_pnl[trip_pnl > 0].sum(), -trip_pnl[trip_pnl < 0].sum()
    stats = metrics.extended(eq["equity"], eq["benchmark"])
    stats["risk"] = metrics.return_risk(eq["equity"])
    stats["eoy"] = metrics.eoy_table(eq["equity"], eq["benchmark"]).to_dict("records")
    stats["round_trip_stats"] = {
        "closed": int(len(closed)), "trims": int((trips["status"] == "trim").sum()),
        "open": int((trips["status"] == "open").sum()),
        "closed_pnl": float(trips.loc[trips["status"] != "open", "pnl"].sum()),
        "open_pnl": float(trips.loc[trips["status"] == "open", "pnl"].sum()),
        "profit_factor": float(wins / losses) if losses > 0 else (float("inf") if wins > 0 else 0.0),
        "mean_holding_days": float(closed["holding_days"].mean()) if len(closed) else 0.0,
        "largest_pnl_symbol": str(per_symbol["symbol"].iloc[0]) if len(trips) else None,
        "win_rate": float((trip_pnl > 0).mean()) if len(trip_pnl) else 0.0,
        "avg_win": float(trip_pnl[trip_pnl > 0].mean()) if (trip_pnl > 0).any() else 0.0,
        "avg_loss": float(trip_pnl[trip_pnl < 0].mean()) if (trip_pnl < 0).any() else 0.0,
        "expectancy": float(trip_pnl.mean()) if len(trip_pnl) else 0.0,
    }
    r = stats["round_trip_stats"]
    r["payoff"] = r["avg_win"] / -r["avg_loss"] if r["avg_loss"] < 0 else 0.0
    stats["concentration"] = rt.concentration_summary(conc, rule)
    stats["exposure"] = metrics.exposure(conc["exposure"])  # as in positions.csv (the replayed book)
    stats["bars_with_position"] = metrics.bars_with_position(book.qty)
    stats["costs"] = metrics.costs(result.trades, cash, float(eq["equity"].iloc[-1]))
    stats["turnover"] = metrics.turnover(result.trades, eq["equity"])
    stats["replay_max_error"] = book.max_error
    if metrics.is_intraday(eq.index):
        # The run's own figures, annualised by sessions (backtests.metrics), over what the backtest computed.
        perf, bench = metrics.performance(eq["equity"]), metrics.performance(eq["benchmark"])
        stats.update(perf)
        stats["benchmark"] = {**result.summary.get("benchmark", {}),
                              **{k: bench[k] for k in ("total_return", "cagr", "sharpe", "max_drawdown")}}
        stats["sessions"] = int(pd.DatetimeIndex(eq.index).normalize().nunique())
    return {"stats": stats, "book": book, "trips": trips, "per_symbol": per_symbol, "conc": conc}


# ---------------------------------------------------------------- figures

def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(height: float = 3.4, width: float = 11.0, rows: int = 1, **kw):
    from matplotlib.figure import Figure  # a bare Figure: no pyplot, so no backend is switched
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, 1, **kw)
    return fig, axes


def _shade_drawdowns(ax, periods: pd.DataFrame, axis: BarAxis) -> None:
    for p in periods.head(TOP_DRAWDOWNS).itertuples():
        start, end = axis.x(pd.DatetimeIndex([p.start, p.end]))
        ax.axvspan(start, end, color="tab:red", alpha=0.08, lw=0)


def fig_equity(eq: pd.DataFrame, periods: pd.DataFrame, log: bool, bench: str = "benchmark") -> str:
    axis = BarAxis(eq.index)
    fig, ax = _fig(3.8)
    ax.plot(axis.x(eq.index), eq["equity"], lw=1.5, label="strategy")
    ax.plot(axis.x(eq.index), eq["benchmark"], lw=1.1, color="grey", label=bench)
    _shade_drawdowns(ax, periods, axis)
    if log:
        ax.set_yscale("log")
    ax.set_title(f"equity against the benchmark ({'log' if log else 'linear'} scale; the {TOP_DRAWDOWNS} deepest "
                 "drawdowns shaded)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    axis.format(ax)
    return _png(fig)


def fig_drawdown(eq: pd.DataFrame, periods: pd.DataFrame) -> str:
    from matplotlib.ticker import PercentFormatter
    axis = BarAxis(eq.index)
    fig, ax = _fig(2.6)
    ax.fill_between(axis.x(eq.index), -metrics.drawdown(eq["equity"]), 0, color="tab:red", alpha=0.45, label="strategy")
    ax.plot(axis.x(eq.index), -metrics.drawdown(eq["benchmark"]), color="grey", lw=1, label="benchmark")
    for rank, p in enumerate(periods.head(TOP_DRAWDOWNS).itertuples(), 1):
        ax.annotate(str(rank), (axis.x(pd.DatetimeIndex([p.valley]))[0], -p.depth), textcoords="offset points",
                    xytext=(0, -11), ha="center", fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("drawdown from the running peak (numbers: the deepest periods, as in the table)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    axis.format(ax)
    return _png(fig)


def fig_monthly(table: pd.DataFrame, years: pd.Series, bench_years: pd.Series) -> str:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot, so no backend is switched
    from matplotlib.ticker import PercentFormatter
    fig = Figure(figsize=(11, 0.9 + 0.45 * max(len(table), 2)), layout="constrained")
    ax, ay = fig.subplots(1, 2, width_ratios=[3, 1])
    grid = table[list(range(1, 13))].to_numpy(dtype="float64")
    bound = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 0.1
    ax.imshow(grid, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.1%}", ha="center", va="center", fontsize=8)
    ax.set_title("monthly returns")
    x = np.arange(len(years))
    ay.bar(x - 0.2, years.to_numpy(), 0.4, label="strategy")
    ay.bar(x + 0.2, bench_years.reindex(years.index).to_numpy(), 0.4, color="grey", label="benchmark")
    ay.set_xticks(x, [str(d.year) for d in years.index])
    ay.yaxis.set_major_formatter(PercentFormatter(1.0))
    ay.axhline(0, color="black", lw=0.6)
    ay.set_title("yearly returns")
    ay.legend(fontsize=8)
    return _png(fig)


def fig_rolling(eq: pd.DataFrame) -> str:
    """Rolling Sharpe, volatility and beta, over a window the run can fill (:func:`rolling_window`)."""
    from matplotlib.ticker import PercentFormatter
    axis = BarAxis(eq.index)
    sessions = len(metrics.session_equity(eq["equity"])) - 1
    window, beta_window = rolling_window(sessions), rolling_window(sessions, BETA_BARS)
    fig, (a, b, c) = _fig(6.2, rows=3, sharex=True)
    rs, rb = metrics.rolling_stats(eq["equity"], window), metrics.rolling_stats(eq["benchmark"], window)
    beta = metrics.rolling_beta(eq["equity"], eq["benchmark"], beta_window)
    unit = "sessions" if axis.intraday else "days"
    a.plot(axis.x_sessions(rs.index), rs["sharpe"], label="strategy")
    a.plot(axis.x_sessions(rb.index), rb["sharpe"], color="grey", lw=1, label="benchmark")
    a.axhline(0, color="black", lw=0.6)
    a.set_title(f"rolling Sharpe ({window} {unit})")
    a.legend(loc="upper left", fontsize=8)
    b.plot(axis.x_sessions(rs.index), rs["volatility"], label="strategy")
    b.plot(axis.x_sessions(rb.index), rb["volatility"], color="grey", lw=1, label="benchmark")
    b.yaxis.set_major_formatter(PercentFormatter(1.0))
    b.set_title(f"rolling annualised volatility ({window} {unit})")
    c.plot(axis.x_sessions(beta.index), beta, color="tab:purple")
    c.axhline(1, color="grey", lw=0.6, ls=":")
    c.set_title(f"rolling beta to the benchmark ({beta_window} {unit})")
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    if not axis.intraday:  # one axis for all three: the data's own span, even where a window is still filling
        c.set_xlim(eq.index[0], eq.index[-1])
    axis.format(c)
    return _png(fig)


def fig_distribution(eq: pd.DataFrame) -> str:
    from matplotlib.ticker import PercentFormatter
    fig, ax = _fig(3.0)
    r = metrics.daily_returns(metrics.session_equity(eq["equity"]))
    b = metrics.daily_returns(metrics.session_equity(eq["benchmark"]))
    bins = np.linspace(min(r.min(), b.min(), -0.01), max(r.max(), b.max(), 0.01), 50)
    ax.hist(r, bins=bins, alpha=0.6, label=f"strategy (skew {r.skew():.2f}, kurtosis {r.kurt():.1f})")
    ax.hist(b, bins=bins, alpha=0.4, color="grey", label="benchmark")
    ax.axvline(r.min(), color="tab:red", ls="--", lw=1, label=f"worst day {r.min():+.2%}")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("distribution of daily returns" + (" (per session: its last slot against the previous "
                 "session's)" if metrics.is_intraday(eq.index) else ""))
    ax.legend(fontsize=8)
    return _png(fig)


def fig_symbols(per_symbol: pd.DataFrame) -> str:
    """Closed (trims included) and open P&L side by side per symbol, each from zero, and the total as a dot: a
    negative open P&L is a bar to the left, never a segment stacked on a gain."""
    from matplotlib.figure import Figure  # a bare Figure: no pyplot, so no backend is switched
    fig = Figure(figsize=(11, max(3.2, 0.8 + 0.34 * len(per_symbol))), layout="constrained")
    ax, ah = fig.subplots(1, 2)
    ps = per_symbol.sort_values("pnl")
    y = np.arange(len(ps))
    ax.barh(y + 0.2, ps["closed_pnl"], 0.4, color="tab:blue", label="closed (sold)")
    ax.barh(y - 0.2, ps["open_pnl"], 0.4, color="tab:orange", label="open (marked at the last close)")
    ax.scatter(ps["pnl"], y, color="black", s=14, zorder=3, label="total")
    ax.set_yticks(y, ps["symbol"])
    ax.axvline(0, color="black", lw=0.6)
    ax.set_title("P&L per symbol, net of costs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    ah.barh(y, ps["bars_held"], color="tab:purple")
    ah.set_yticks(y, ps["symbol"])
    ah.set_title("bars held per symbol")
    return _png(fig)


def fig_trips(trips: pd.DataFrame) -> str:
    from matplotlib.ticker import PercentFormatter
    fig, ax = _fig(3.0)
    for status, marker in (("closed", "o"), ("open", "x")):
        t = trips[trips["status"] == status]
        if len(t):
            ax.scatter(t["holding_days"], t["return"], marker=marker, s=22, alpha=0.7, label=f"{status} ({len(t)})")
    ax.axhline(0, color="black", lw=0.6)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("holding days")
    ax.set_title("round trips: return against holding time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def fig_concentration(conc: pd.DataFrame, threshold: float) -> str:
    from matplotlib.ticker import PercentFormatter
    axis = BarAxis(conc.index)
    fig, (a, b) = _fig(4.0, rows=2, sharex=True)
    x = axis.x(conc.index)
    a.plot(x, conc["exposure"], color="tab:blue", lw=1, label="invested share of equity")
    a.plot(x, conc["max_weight"], color="tab:red", lw=1.2, label="largest single weight")
    a.axhline(threshold, color="tab:red", ls=":", lw=1, label=f"{threshold:.0%}")
    a.yaxis.set_major_formatter(PercentFormatter(1.0))
    a.set_title(f"exposure (mean invested share {conc['exposure'].mean():.1%}) and concentration")
    a.legend(loc="upper left", fontsize=8)
    b.step(x, conc["names"], where="post", color="tab:green")
    b.set_title("number of names held")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    axis.format(b)
    return _png(fig)


# ---------------------------------------------------------------- page

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1120px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
img{max-width:100%}.warn{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;margin:12px 0}
.scroll{max-height:420px;overflow:auto}.log{display:none}#logscale:checked~.log{display:block}
#logscale:checked~.lin{display:none}.muted{color:#777;font-size:12px}
"""


def _pct(v: float) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:+.2%}"


def _num(v: float, digits: int = 2) -> str:
    return "" if v is None else ("inf" if v == float("inf") else f"{v:.{digits}f}")


def _table(frame: pd.DataFrame, formats: dict[str, Any] | None = None, id_: str = "") -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, v in zip(frame.columns, row):
            f = formats.get(col)
            text = "" if (v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT) else (
                f(v) if f else (_stamp(v) if isinstance(v, pd.Timestamp) else str(v)))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{id_}"><tr>{head}</tr>' + "".join(body) + "</table>"


def _stamp(t: pd.Timestamp) -> str:
    """A date, or for an intraday row its New York time too."""
    return t.date().isoformat() if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")


def _img(data: str, name: str, cls: str = "") -> str:
    return f'<img class="{cls}" id="fig-{name}" alt="{name}" src="data:image/png;base64,{data}">'


def render(result: BacktestResult, rule: rt.ConcentrationRule = rt.ConcentrationRule()) -> str:
    """The whole page as one HTML string."""
    s, eq = result.summary, result.equity
    parts = _parts(result, rule)
    st, trips, per_symbol, conc = parts["stats"], parts["trips"], parts["per_symbol"], parts["conc"]
    periods = metrics.drawdown_periods(eq["equity"])
    bench_perf = metrics.performance(eq["benchmark"])
    bench_ext = metrics.extended(eq["benchmark"], eq["benchmark"])
    perf = metrics.performance(eq["equity"])
    rel, c = st["relative"], st["concentration"]
    risk, bench_risk = st["risk"], metrics.return_risk(eq["benchmark"])
    rts, costs, turn = st["round_trip_stats"], st["costs"], st["turnover"]
    day = "session" if metrics.is_intraday(eq.index) else "day"
    per = "Per-session" if day == "session" else "Daily"
    money = lambda v: f"{v:,.2f}"  # noqa: E731
    share = "" if costs["share_of_profit"] is None else f" ({costs['share_of_profit']:.1%} of the net profit)"
    rows = [
        ("Total return", _pct(perf["total_return"]), _pct(bench_perf["total_return"])),
        ("CAGR", _pct(perf["cagr"]), _pct(bench_perf["cagr"])),
        ("Sharpe (252, rf 0)", _num(perf["sharpe"]), _num(bench_perf["sharpe"])),
        ("Sortino", _num(perf["sortino"]), _num(bench_perf["sortino"])),
        ("Volatility", f"{perf['volatility']:.2%}", f"{bench_perf['volatility']:.2%}"),
        ("Max drawdown", _pct(-perf["max_drawdown"]), _pct(-bench_perf["max_drawdown"])),
        ("Calmar", _num(st["calmar"]), _num(bench_ext["calmar"])),
        ("Profit factor (daily returns)" if day == "day" else "Profit factor (per-session returns)", _num(st["profit_factor"]),
         _num(bench_ext["profit_factor"])),
        ("Longest drawdown (days)", str(st["longest_drawdown"]["days"]), str(bench_ext["longest_drawdown"]["days"])),
        (f"Worst {day}", f"{_pct(st['worst_day']['return'])} ({st['worst_day']['date']})",
         f"{_pct(bench_ext['worst_day']['return'])} ({bench_ext['worst_day']['date']})"),
        ("Worst month", f"{_pct(st['worst_month']['return'])} ({st['worst_month']['date']})",
         f"{_pct(bench_ext['worst_month']['return'])} ({bench_ext['worst_month']['date']})"),
        (f"{per} VaR 95% (normal)", _pct(risk["var"]), _pct(bench_risk["var"])),
        (f"{per} CVaR 95% (normal expected shortfall)", _pct(risk["cvar"]), _pct(bench_risk["cvar"])),
        (f"Average winning / losing {day}", f"{_pct(risk['avg_win'])} / {_pct(risk['avg_loss'])}",
         f"{_pct(bench_risk['avg_win'])} / {_pct(bench_risk['avg_loss'])}"),
        (f"Payoff ({day}s: average win / average loss)", _num(risk["payoff"]), _num(bench_risk["payoff"])),
        (f"Expectancy per {day}", _pct(risk["expectancy"]), _pct(bench_risk["expectancy"])),
        ("Alpha (annualised)", _pct(rel["alpha"]), ""),
        ("Beta", _num(rel["beta"]), ""),
        ("Information ratio (annualised)", _num(rel["information_ratio"]), ""),
        ("Correlation (daily returns)", _num(rel["correlation"]), ""),
        ("Tracking error", _pct(rel["tracking_error"]), ""),
        ("Commissions paid", money(costs["commission"]) + ("" if costs["fees"] else share), ""),
        *([("Fees paid", money(costs["fees"]), ""), ("Costs paid (commissions and fees)", money(costs["total"]) + share,
                                                    "")] if costs["fees"] else []),
        ("Turnover (one-way, per year)", f"{turn['annual']:.1f}x", ""),
        ("Exposure (mean invested share)", f"{st['exposure']:.1%}", ""),
        ("Bars with a position", f"{st['bars_with_position']:.1%}", ""),
        ("Orders executed", str(len(result.trades)), ""),
        ("Round trips closed / open; trims", f"{rts['closed']} / {rts['open']}; {rts['trims']}", ""),
        ("Win rate (closed round trips)", f"{rts['win_rate']:.0%}" if rts["closed"] else "", ""),
        ("Average win / loss per round trip", f"{money(rts['avg_win'])} / {money(rts['avg_loss'])}", ""),
        ("Payoff (round trips)", _num(rts["payoff"]), ""),
        ("Expectancy per round trip", money(rts["expectancy"]), ""),
        ("Profit factor (closed round trips)", _num(rts["profit_factor"]), ""),
        ("Largest single weight", f"{c['max_weight']:.1%} ({c['max_weight_symbol']}, {c['max_weight_date']})", ""),
        ("Mean number of names", _num(c["mean_names"], 1), ""),
        ("Final equity", f"{s['final_equity']:,.2f}", f"{eq['benchmark'].iloc[-1]:,.2f}"),
    ]
    stats_table = _table(pd.DataFrame(rows, columns=["", "strategy", benchmark_label(s)]), id_="stats")
    eoy = pd.DataFrame(st["eoy"], columns=["year", "strategy", "benchmark", "multiplier", "won"])
    eoy_table = _table(eoy.assign(won=eoy["won"].map({True: "+", False: "-"})),
                       {"strategy": _pct, "benchmark": _pct, "multiplier": lambda v: _num(v)}, "eoy")
    warning = f'<div class="warn" id="concentration-warning">Concentration: {html.escape(c["warning"])}</div>' \
        if c["warning"] else ""
    if st["replay_max_error"] > 1e-6 * float(eq["equity"].iloc[0]):
        warning += (f'<div class="warn">The orders replayed over the closes miss the recorded equity by up to '
                    f'{st["replay_max_error"]:.2f}: positions and round trips below may be off.</div>')
    dd_table = _table(periods.head(TOP_DRAWDOWNS).assign(rank=range(1, min(TOP_DRAWDOWNS, len(periods)) + 1))[
        ["rank", "start", "valley", "end", "days", "depth", "recovered"]], {"depth": lambda v: f"{-v:.2%}"}, "drawdowns")
    sym_table = _table(per_symbol, {"pnl": money, "closed_pnl": money, "open_pnl": money,
                                    "win_rate": lambda v: f"{v:.0%}", "mean_holding_days": lambda v: f"{v:.1f}"},
                       "per-symbol")
    trips_table = _table(trips, {"entry_price": money, "exit_price": money, "pnl": money, "trip_pnl": money,
                                 "return": lambda v: f"{v:+.2%}"}, "round-trips")
    monthly = metrics.monthly_table(eq["equity"])
    years = metrics.period_returns(eq["equity"], "Y")
    figures = {
        "equity": _img(fig_equity(eq, periods, False, benchmark_label(s)), "equity", "lin")
        + _img(fig_equity(eq, periods, True, benchmark_label(s)), "equity-log", "log"),
        "drawdown": _img(fig_drawdown(eq, periods), "drawdown"),
        "monthly": _img(fig_monthly(monthly, years, metrics.period_returns(eq["benchmark"], "Y")), "monthly"),
        "rolling": _img(fig_rolling(eq), "rolling"),
        "distribution": _img(fig_distribution(eq), "distribution"),
        "symbols": _img(fig_symbols(per_symbol), "symbols") if len(per_symbol) else "",
        "trips": _img(fig_trips(trips), "trips") if len(trips) else "<p>No round trips.</p>",
        "concentration": _img(fig_concentration(conc, c["threshold"]), "concentration"),
    }
    returns_note = "daily returns, 252 a year"
    if metrics.is_intraday(eq.index):
        returns_note = (f"{s.get('interval', 'intraday')} bars, deciding every {s.get('cadence', {}).get('cadence', '?')}; "
                        f"returns per session (the equity at each session's last slot), 252 sessions a year; "
                        f"drawdowns on every slot")
    title = run_title(s)
    commission = s.get("config", {}).get("commission")
    cost_note = f"commission {commission:.2%}; " if isinstance(commission, (int, float)) else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">{s['bars']} bars; symbols {html.escape(', '.join(s['symbols']))}; benchmark
{html.escape(s['benchmark']['name'])}; {cost_note}{returns_note},
risk-free rate 0.</p>
{warning}
<h2>Summary</h2>{stats_table}
<h2>Equity</h2><input type="checkbox" id="logscale"><label for="logscale"> log scale</label>{figures['equity']}
<h2>Drawdowns</h2>{figures['drawdown']}{dd_table}
<h2>Monthly and yearly returns</h2>{figures['monthly']}
<h3>End of year</h3>{eoy_table}
<h2>Rolling Sharpe, volatility and beta</h2>{figures['rolling']}
<h2>Return distribution</h2>{figures['distribution']}
<h2>Per symbol</h2>{figures['symbols']}{sym_table}
<h2>Exposure and concentration</h2>{figures['concentration']}
<h2>Round trips</h2>{figures['trips']}<div class="scroll">{trips_table}</div>
<p class="muted">P&amp;L net of commissions and fees (the entry's shared pro rata over the shares sold); open
positions marked at the last close. A trim is a partial sell that leaves shares held: its P&amp;L counts in
its round trip's trip_pnl, but it is not a round trip of its own. The pnl column sums to the equity change. Files: round_trips.csv, positions.csv, trades.csv, equity.csv, summary.json.</p>
</body></html>
"""


def write_tearsheet(result: BacktestResult, path: Path, rule: rt.ConcentrationRule = rt.ConcentrationRule()) -> Path:
    """Save ``report.html`` for ``result`` at ``path``; returns the path."""
    path.write_text(render(result, rule), encoding="utf-8")
    return path
