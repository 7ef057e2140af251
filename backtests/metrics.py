"""Performance metrics from an equity curve (daily bars, 252 a year, risk-free rate 0).

Example:
    >>> import pandas as pd
    >>> eq = pd.Series([100.0, 110.0, 99.0, 121.0], index=pd.bdate_range("2022-01-03", periods=4))
    >>> m = performance(eq)
    >>> round(m["total_return"], 2), round(m["max_drawdown"], 2)
    (0.21, 0.1)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

BARS_PER_YEAR = 252


def performance(equity: pd.Series) -> dict[str, float]:
    """total_return, cagr, sharpe, sortino, max_drawdown (a positive fraction) and annualised volatility."""
    values = equity.astype("float64").to_numpy()
    if len(values) < 2 or values[0] <= 0:
        return {k: 0.0 for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility")}
    returns = values[1:] / values[:-1] - 1.0
    total = values[-1] / values[0] - 1.0
    years = len(returns) / BARS_PER_YEAR
    cagr = (values[-1] / values[0]) ** (1.0 / years) - 1.0 if values[-1] > 0 else -1.0
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    mean = returns.mean()
    sharpe = mean / std * math.sqrt(BARS_PER_YEAR) if std > 0 else 0.0
    downside = math.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    sortino = mean / downside * math.sqrt(BARS_PER_YEAR) if downside > 0 else 0.0
    peak = np.maximum.accumulate(values)
    max_dd = float(np.max(1.0 - values / peak))
    return {
        "total_return": float(total),
        "cagr": float(cagr),
        "sharpe": float(sharpe),
        "sortino": float(sortino),
        "max_drawdown": max_dd,
        "volatility": float(std * math.sqrt(BARS_PER_YEAR)),
    }


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak at each bar, as a positive fraction."""
    return 1.0 - equity / equity.cummax()


def round_trips(trades: pd.DataFrame) -> pd.DataFrame:
    """Closed positions from executed orders: each sell closes the shares bought since the last flat point.

    Profit includes both sides' commissions. Returns columns symbol, entry_date, exit_date, qty, pnl.
    """
    rows = []
    book: dict[str, dict[str, Any]] = {}
    for t in trades.sort_values(["date"], kind="stable").itertuples(index=False):
        open_ = book.setdefault(t.symbol, {"qty": 0, "cost": 0.0, "entry": t.date})
        if t.side == "buy":
            if open_["qty"] == 0:
                open_["entry"] = t.date
            open_["qty"] += t.qty
            open_["cost"] += t.value + t.commission
        else:
            if open_["qty"] <= 0:
                continue
            share = min(t.qty, open_["qty"]) / open_["qty"]
            cost = open_["cost"] * share
            rows.append({"symbol": t.symbol, "entry_date": open_["entry"], "exit_date": t.date,
                         "qty": min(t.qty, open_["qty"]), "pnl": t.value - t.commission - cost})
            open_["qty"] -= min(t.qty, open_["qty"])
            open_["cost"] -= cost
    return pd.DataFrame(rows, columns=["symbol", "entry_date", "exit_date", "qty", "pnl"])


def trade_stats(trades: pd.DataFrame) -> dict[str, float | int]:
    """trades (executed orders), round_trips and win_rate (share of round trips with positive profit)."""
    trips = round_trips(trades)
    return {
        "trades": int(len(trades)),
        "round_trips": int(len(trips)),
        "win_rate": float((trips["pnl"] > 0).mean()) if len(trips) else 0.0,
    }


def exposure(invested: pd.Series) -> float:
    """Share of bars that ended with any position open."""
    return float((invested.astype("float64") > 0).mean()) if len(invested) else 0.0
