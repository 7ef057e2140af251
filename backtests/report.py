"""The report picture: equity vs benchmark, drawdown, and the closes, forecast and trades of the symbol that
mattered most (largest absolute P&L).

Drawn with matplotlib directly on the Agg backend (Backtrader's own plotting forces TkAgg and needs a screen).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from backtests.backtest import BacktestResult  # noqa: E402
from backtests.metrics import drawdown  # noqa: E402


def focus_symbol(result: BacktestResult) -> str | None:
    """The symbol to draw in detail: the one with the largest absolute P&L (closed and open, net of commissions),
    else the first with forecasts."""
    if len(result.trades):
        from backtests import round_trips as rt

        _, closes = rt.on_equity_clock(result.trades, result.closes, result.equity.index, result.summary.get("interval"))
        trips = rt.round_trips(result.trades, closes)
        pnl = trips.groupby("symbol")["pnl"].sum()
        return str(sorted(pnl.index, key=lambda s: (-abs(pnl[s]), s))[0])
    if len(result.forecasts):
        return str(result.forecasts["symbol"].iloc[0])
    return None


def write_report(result: BacktestResult, path: Path, symbol: str | None = None) -> Path:
    """Save ``report.png`` for ``result`` at ``path``; returns the path."""
    s = result.summary
    eq = result.equity
    symbol = symbol or focus_symbol(result)
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 3]})
    ax = axes[0]
    ax.plot(eq.index, eq["equity"], label=f"strategy ({s['total_return']:+.1%}, Sharpe {s['sharpe']:.2f})", lw=1.6)
    b = s["benchmark"]
    ax.plot(eq.index, eq["benchmark"], label=f"benchmark ({b['total_return']:+.1%}, Sharpe {b['sharpe']:.2f})",
            lw=1.2, color="grey")
    ax.set_ylabel("equity")
    ax.set_title(f"ProphetTrend {s['start']} to {s['end']}: {len(s['symbols'])} symbols, top {s['params']['top_n']}, "
                 f"{s['params']['mode']}, engine {s['params']['engine']}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.fill_between(eq.index, -drawdown(eq["equity"]), 0, color="tab:red", alpha=0.4, label="strategy")
    ax.plot(eq.index, -drawdown(eq["benchmark"]), color="grey", lw=1, label="benchmark")
    ax.set_ylabel("drawdown")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax = axes[2]
    if symbol is not None:
        closes = result.closes[symbol].loc[eq.index[0]:]
        ax.plot(closes.index, closes, color="black", lw=1.2, label=f"{symbol} close")
        fc = result.forecasts[result.forecasts["symbol"] == symbol].set_index("date")["forecast"].dropna()
        if len(fc):
            ax.plot(fc.index, fc, color="tab:blue", lw=1.0, ls="--", label="Prophet forecast (decision horizon)")
        trades = result.trades[result.trades["symbol"] == symbol]
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            t = trades[trades["side"] == side]
            if len(t):
                ax.scatter(pd.to_datetime(t["date"]), t["price"], marker=marker, s=70, color=color, zorder=3,
                           label=f"{side} ({len(t)})")
        ax.legend(loc="upper left")
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
