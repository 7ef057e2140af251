"""The report picture: equity vs benchmark, drawdown, and one symbol in detail, for any strategy.

The detail panel: when the strategy provides forecasts (``Decision.forecasts``, or signals with a ``forecast``
as ProphetTrend's), the closes and forecast of the symbol with the largest absolute P&L among those forecast;
otherwise the closes of the most traded symbol (most orders). Its buys and sells are marked either way.

Drawn with matplotlib directly on the Agg backend (Backtrader's own plotting forces TkAgg and needs a screen).

Example:
    >>> import pickle, tempfile, pathlib  # doctest: +SKIP
    >>> write_report(result, pathlib.Path(tempfile.mkdtemp()) / "report.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from backtests.backtest import BacktestResult  # noqa: E402
from backtests.bar_axis import BarAxis  # noqa: E402
from backtests.metrics import drawdown  # noqa: E402
from backtests.tearsheet import benchmark_label, run_title  # noqa: E402


def _forecast_symbols(result: BacktestResult) -> list[str]:
    fc = result.forecasts
    if not len(fc) or "forecast" not in fc:
        return []
    return list(dict.fromkeys(fc.loc[fc["forecast"].notna(), "symbol"].astype(str)))


def _trip_pnl(result: BacktestResult) -> pd.Series:
    from backtests import round_trips as rt

    _, closes = rt.on_equity_clock(result.trades, result.closes, result.equity.index, result.summary.get("interval"))
    return rt.round_trips(result.trades, closes).groupby("symbol")["pnl"].sum()


def focus_symbol(result: BacktestResult) -> str | None:
    """The symbol to draw in detail: with forecasts, the forecast symbol with the largest absolute P&L (closed
    and open, net of costs; the first forecast one if none traded); without, the most traded symbol (most
    orders, ties to the larger absolute P&L, then the name). None when nothing traded and nothing was forecast."""
    forecast = _forecast_symbols(result)
    if not len(result.trades):
        return forecast[0] if forecast else None
    pnl = _trip_pnl(result)
    if forecast:
        traded = [s for s in forecast if s in pnl.index]
        return str(sorted(traded, key=lambda s: (-abs(pnl[s]), s))[0]) if traded else forecast[0]
    counts = result.trades["symbol"].astype(str).value_counts()
    return str(sorted(counts.index, key=lambda s: (-counts[s], -abs(pnl.get(s, 0.0)), s))[0])


def forecast_line(result: BacktestResult, symbol: str) -> pd.Series:
    """``symbol``'s forecasts on every bar of the run, NaN where a bar has none, so the line breaks across the
    months the strategy did not forecast it (instead of a straight segment over them)."""
    from backtests import round_trips as rt

    fc = result.forecasts[result.forecasts["symbol"] == symbol]
    series = fc.set_index(pd.DatetimeIndex(fc["date"]))["forecast"].astype("float64")
    series = series[~series.index.duplicated(keep="last")]
    # an intraday decision is dated by its last bar's start, the equity row by the slot: onto the equity's clock
    _, on_clock = rt.on_equity_clock(result.trades.iloc[:0], series.to_frame(symbol), result.equity.index,
                                     result.summary.get("interval"))
    return on_clock[symbol]


def write_report(result: BacktestResult, path: Path, symbol: str | None = None) -> Path:
    """Save ``report.png`` for ``result`` at ``path``; returns the path."""
    s = result.summary
    eq = result.equity
    axis = BarAxis(eq.index)
    x = axis.x(eq.index)
    symbol = symbol or focus_symbol(result)
    forecast = _forecast_symbols(result)
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 3]})
    ax = axes[0]
    ax.plot(x, eq["equity"], label=f"strategy ({s['total_return']:+.1%}, Sharpe {s['sharpe']:.2f})", lw=1.6)
    b = s["benchmark"]
    ax.plot(x, eq["benchmark"], label=f"{benchmark_label(s)} ({b['total_return']:+.1%}, Sharpe {b['sharpe']:.2f})",
            lw=1.2, color="grey")
    ax.set_ylabel("equity")
    ax.set_title(run_title(s), fontsize=10)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.fill_between(x, -drawdown(eq["equity"]), 0, color="tab:red", alpha=0.4, label="strategy")
    ax.plot(x, -drawdown(eq["benchmark"]), color="grey", lw=1, label="benchmark")
    ax.set_ylabel("drawdown")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax = axes[2]
    if symbol is not None:
        from backtests import round_trips as rt

        # on the equity's clock: an intraday close or fill is drawn at the slot whose valuation first includes it
        moved, on_clock = rt.on_equity_clock(result.trades, result.closes[[symbol]], eq.index, s.get("interval"))
        closes = on_clock[symbol]
        ax.plot(axis.x(closes.index), closes, color="black", lw=1.2, label=f"{symbol} close")
        if symbol in forecast:
            line = forecast_line(result, symbol)
            ax.plot(axis.x(line.index), line, color="tab:blue", lw=1.0, ls="--",
                    label="forecast at each decision (gaps: not forecast)")
        trades = moved[moved["symbol"] == symbol]
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            t = trades[trades["side"] == side]
            if len(t):
                ax.scatter(axis.x(pd.to_datetime(t["date"])), t["price"], marker=marker, s=70, color=color, zorder=3,
                           label=f"{side} ({len(t)})")
        why = ("largest absolute P&L among the forecast symbols" if symbol in forecast
               else "most traded symbol (most orders)")
        ax.set_title(f"{symbol}: {why}", fontsize=10)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no orders and no forecasts: nothing to draw", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    axis.format(axes[2])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
