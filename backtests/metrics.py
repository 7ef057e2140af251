"""Performance metrics from an equity curve (daily bars, 252 a year, risk-free rate 0).

Intraday curves (one row per slot, timestamps with a time of day) are annualised by **sessions, not bars**:
returns, Sharpe, Sortino, volatility, CAGR, alpha, the rolling and period statistics all count the equity at each
session's last slot (preceded by the starting equity, so the first session's return is in), 252 sessions a
year (:func:`session_equity`). Drawdowns are measured on every slot: a dip inside a session is a real one.

Example:
    >>> import pandas as pd
    >>> eq = pd.Series([100.0, 110.0, 99.0, 121.0], index=pd.bdate_range("2022-01-03", periods=4))
    >>> m = performance(eq)
    >>> round(m["total_return"], 2), round(m["max_drawdown"], 2)
    (0.21, 0.1)
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

BARS_PER_YEAR = 252


def is_intraday(index) -> bool:
    """Whether an equity index has times of day (an intraday run's slots), rather than one row per date.

    >>> is_intraday(pd.DatetimeIndex(["2022-06-01 09:45", "2022-06-01 10:00"])), is_intraday(pd.bdate_range("2022-06-01", periods=2))
    (True, False)
    """
    idx = pd.DatetimeIndex(index)
    return bool(len(idx)) and bool((idx != idx.normalize()).any())


def session_equity(equity: pd.Series) -> pd.Series:
    """The curve the annualised statistics count: for intraday equity, the starting equity followed by each
    session's last slot (indexed by the session's date; the start one day before the first); daily equity as it is.

    >>> eq = pd.Series([100.0, 98.0, 103.0, 101.0, 104.0], index=pd.DatetimeIndex(
    ...     ["2022-06-01 09:45", "2022-06-01 12:00", "2022-06-01 15:45", "2022-06-02 09:45", "2022-06-02 15:45"]))
    >>> session_equity(eq).tolist(), [d.date().isoformat() for d in session_equity(eq).index]
    ([100.0, 103.0, 104.0], ['2022-05-31', '2022-06-01', '2022-06-02'])
    """
    if not is_intraday(equity.index):
        return equity
    closes = equity.groupby(pd.DatetimeIndex(equity.index).normalize()).last()
    start = pd.Series([equity.iloc[0]], index=pd.DatetimeIndex([closes.index[0] - pd.Timedelta(days=1)]))
    out = pd.concat([start, closes])
    out.index.name = equity.index.name
    return out


def performance(equity: pd.Series) -> dict[str, float]:
    """total_return, cagr, sharpe, sortino, max_drawdown (a positive fraction) and annualised volatility.

    Intraday equity: everything but the drawdown from the session curve (:func:`session_equity`), the
    drawdown from every slot."""
    if is_intraday(equity.index):
        perf = performance(session_equity(equity))
        if len(equity) >= 2 and float(equity.iloc[0]) > 0:
            perf["max_drawdown"] = float(drawdown(equity.astype("float64")).max())
        return perf
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


def trips_from_orders(trades: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Round trips (flat to flat) from executed orders, and the number of trims (sells that left shares held).

    A round trip opens with the first buy into a flat position and closes with the sell that makes it flat
    again; partial sells on the way (trims, e.g. a resize) add their realised profit to that trip but are not
    trips of their own, so they cannot inflate the count or the win rate. Profit is net of both sides'
    commissions (and fees, if the orders carry a ``fees`` column). Columns: symbol, entry_date, exit_date, pnl.

    >>> d = pd.bdate_range("2022-01-03", periods=3)
    >>> t = pd.DataFrame({"date": d, "symbol": "A", "side": ["buy", "sell", "sell"], "qty": [10, 2, 8],
    ...                   "value": [100.0, 22.0, 96.0], "commission": 0.0})
    >>> trips, trims = trips_from_orders(t)
    >>> trips["pnl"].tolist(), trims
    ([18.0], 1)
    """
    rows = []
    trims = 0
    book: dict[str, dict[str, Any]] = {}
    fees = trades["fees"] if "fees" in trades else pd.Series(0.0, index=trades.index)
    for t, fee in zip(trades.sort_values(["date"], kind="stable").itertuples(index=False),
                      fees.reindex(trades.sort_values(["date"], kind="stable").index).fillna(0.0)):
        pos = book.setdefault(t.symbol, {"qty": 0, "cost": 0.0, "entry": t.date, "realised": 0.0})
        charge = float(t.commission) + float(fee)
        if t.side == "buy":
            if pos["qty"] == 0:
                pos["entry"], pos["realised"] = t.date, 0.0
            pos["qty"] += int(t.qty)
            pos["cost"] += float(t.value) + charge
            continue
        if pos["qty"] <= 0:
            continue
        sold = min(int(t.qty), pos["qty"])
        cost = pos["cost"] * sold / pos["qty"]
        pos["realised"] += float(t.value) * sold / int(t.qty) - charge - cost
        pos["qty"] -= sold
        pos["cost"] -= cost
        if pos["qty"]:
            trims += 1
        else:
            rows.append({"symbol": t.symbol, "entry_date": pos["entry"], "exit_date": t.date, "pnl": pos["realised"]})
    return pd.DataFrame(rows, columns=["symbol", "entry_date", "exit_date", "pnl"]), trims


def trade_stats(trades: pd.DataFrame) -> dict[str, float | int]:
    """trades (executed orders), round_trips (flat to flat), trims (partial sells, counted apart), win_rate (share
    of round trips with positive profit), average win and loss per round trip (money), payoff (their ratio) and
    expectancy (mean profit per round trip, ``win_rate * avg_win + (1 - win_rate) * avg_loss``)."""
    trips, trims = trips_from_orders(trades)
    pnl = trips["pnl"]
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    avg_win = float(wins.mean()) if len(wins) else 0.0
    avg_loss = float(losses.mean()) if len(losses) else 0.0
    return {
        "trades": int(len(trades)),
        "round_trips": int(len(trips)),
        "trims": int(trims),
        "win_rate": float((pnl > 0).mean()) if len(trips) else 0.0,
        "avg_win_trip": avg_win,
        "avg_loss_trip": avg_loss,
        "payoff_trip": avg_win / -avg_loss if avg_loss < 0 else (math.inf if avg_win > 0 else 0.0),
        "expectancy_trip": float(pnl.mean()) if len(trips) else 0.0,
    }


def costs(trades: pd.DataFrame, start_equity: float, final_equity: float) -> dict[str, float | None]:
    """What the orders paid: commissions, fees (a ``fees`` column, if the orders carry one) and their total, and
    the total as a share of the net profit (None when the run made no profit: a share of a loss means nothing).

    >>> t = pd.DataFrame({"commission": [1.0, 2.0]})
    >>> costs(t, 100.0, 112.0)
    {'commission': 3.0, 'fees': 0.0, 'total': 3.0, 'share_of_profit': 0.25}
    """
    commission = float(trades["commission"].sum()) if "commission" in trades and len(trades) else 0.0
    fees = float(trades["fees"].sum()) if "fees" in trades and len(trades) else 0.0
    total = commission + fees
    profit = final_equity - start_equity
    return {"commission": commission, "fees": fees, "total": total,
            "share_of_profit": total / profit if profit > 0 else None}


def turnover(trades: pd.DataFrame, equity: pd.Series) -> dict[str, float]:
    """Traded value over the run: ``total`` (buys plus sells over the mean equity) and ``annual`` (one-way:
    half of that per year, the share of the book replaced in a year, 252 sessions a year).

    >>> eq = pd.Series([100.0] * 253, index=pd.bdate_range("2022-01-03", periods=253))
    >>> turnover(pd.DataFrame({"value": [100.0, 100.0]}), eq)
    {'total': 2.0, 'annual': 1.0}
    """
    traded = float(trades["value"].abs().sum()) if len(trades) else 0.0
    mean_equity = float(equity.astype("float64").mean()) if len(equity) else 0.0
    total = traded / mean_equity if mean_equity > 0 else 0.0
    years = max(len(session_equity(equity)) - 1, 1) / BARS_PER_YEAR
    return {"total": total, "annual": total / 2.0 / years}


def exposure(invested_share: pd.Series) -> float:
    """The mean invested share of equity over the bars (0.5: on average half the equity was in positions)."""
    return float(invested_share.astype("float64").fillna(0.0).mean()) if len(invested_share) else 0.0


def bars_with_position(qty: pd.DataFrame) -> float:
    """Share of bars that ended with any position open (not a measure of how much was invested)."""
    return float((qty > 0).any(axis=1).mean()) if len(qty) else 0.0


def daily_returns(equity: pd.Series) -> pd.Series:
    """Bar-to-bar returns of an equity curve (the first bar has none)."""
    values = equity.astype("float64")
    return (values / values.shift(1) - 1.0).iloc[1:]


def profit_factor(returns: pd.Series) -> float:
    """Sum of gains over the absolute sum of losses (inf when nothing was lost, 0 with no gains either)."""
    gains, losses = float(returns[returns > 0].sum()), float(-returns[returns < 0].sum())
    if losses == 0:
        return math.inf if gains > 0 else 0.0
    return gains / losses


def relative(equity: pd.Series, benchmark: pd.Series) -> dict[str, float]:
    """Alpha (annualised, compounded), beta, information ratio (annualised), correlation and tracking error.

    Daily returns, risk-free rate 0: ``alpha = (1 + mean(r - beta * b)) ** 252 - 1``, ``beta = cov(r, b) / var(b)``.

    >>> idx = pd.bdate_range("2022-01-03", periods=5)
    >>> bench = pd.Series([100.0, 101.0, 100.0, 102.0, 103.0], index=idx)
    >>> round(relative(2 * bench - 100.0, bench)["correlation"], 6) > 0.99
    True
    """
    r, b = daily_returns(session_equity(equity)), daily_returns(session_equity(benchmark))
    if len(r) < 2 or float(b.var(ddof=0)) == 0:
        return {"alpha": 0.0, "beta": 0.0, "information_ratio": 0.0, "correlation": 0.0, "tracking_error": 0.0}
    beta = float(((r - r.mean()) * (b - b.mean())).mean() / b.var(ddof=0))
    alpha = (1.0 + float((r - beta * b).mean())) ** BARS_PER_YEAR - 1.0
    active = r - b
    te = float(active.std(ddof=1))
    ir = float(active.mean()) / te * math.sqrt(BARS_PER_YEAR) if te > 0 else 0.0
    corr = float(np.corrcoef(r, b)[0, 1]) if r.std() > 0 else 0.0
    return {"alpha": float(alpha), "beta": beta, "information_ratio": ir, "correlation": corr,
            "tracking_error": te * math.sqrt(BARS_PER_YEAR)}


def drawdown_periods(equity: pd.Series) -> pd.DataFrame:
    """Every spell under water, deepest first: start (first bar below the peak), valley, end (last bar below),
    days (calendar days start to end, inclusive, as quantstats counts them), depth, recovered.

    >>> eq = pd.Series([100.0, 90.0, 95.0, 101.0, 99.0], index=pd.bdate_range("2022-01-03", periods=5))
    >>> drawdown_periods(eq)[["days", "recovered"]].values.tolist()
    [[2, True], [1, False]]
    """
    dd = drawdown(equity.astype("float64"))
    under = (dd > 0).to_numpy()
    rows, i, n = [], 0, len(dd)
    while i < n:
        if not under[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and under[j + 1]:
            j += 1
        spell = dd.iloc[i:j + 1]
        rows.append({"start": dd.index[i], "valley": spell.idxmax(), "end": dd.index[j],
                     "days": int((dd.index[j] - dd.index[i]).days) + 1, "depth": float(spell.max()),
                     "recovered": j + 1 < n})
        i = j + 1
    frame = pd.DataFrame(rows, columns=["start", "valley", "end", "days", "depth", "recovered"])
    return frame.sort_values("depth", ascending=False, kind="stable").reset_index(drop=True)


def period_returns(equity: pd.Series, freq: str) -> pd.Series:
    """Compounded returns per calendar period (``"M"`` months, ``"Y"`` years), labelled by the period's start."""
    r = daily_returns(session_equity(equity))
    if r.empty:
        return pd.Series(dtype="float64")
    grouped = (1.0 + r).groupby(r.index.to_period(freq)).prod() - 1.0
    grouped.index = grouped.index.to_timestamp()
    return grouped


def monthly_table(equity: pd.Series) -> pd.DataFrame:
    """Monthly returns as a year x month (1..12) table, with the year's compounded return in column ``year``."""
    months = period_returns(equity, "M")
    table = pd.DataFrame({"year": months.index.year, "month": months.index.month, "r": months.to_numpy()})
    grid = table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))
    years = period_returns(equity, "Y")
    grid["year"] = pd.Series(years.to_numpy(), index=years.index.year)
    return grid


def rolling_stats(equity: pd.Series, window: int = 63) -> pd.DataFrame:
    """Rolling annualised Sharpe and volatility over ``window`` bars (sessions for intraday equity; NaN until the
    window is full)."""
    r = daily_returns(session_equity(equity))
    mean, std = r.rolling(window).mean(), r.rolling(window).std(ddof=1)
    return pd.DataFrame({"sharpe": mean / std.where(std > 0) * math.sqrt(BARS_PER_YEAR),
                         "volatility": std * math.sqrt(BARS_PER_YEAR)})


def extended(equity: pd.Series, benchmark: pd.Series) -> dict[str, Any]:
    """The tearsheet's return statistics: Calmar, profit factor, longest drawdown, best and worst day and month,
    and the benchmark-relative ones under ``relative``. Intraday equity: "day" is a session (its last slot against
    the previous session's), the longest drawdown is measured on every slot."""
    perf = performance(equity)
    r = daily_returns(session_equity(equity))
    months = period_returns(equity, "M")
    periods = drawdown_periods(equity)
    longest = periods.sort_values("days", ascending=False, kind="stable").head(1)

    def _day(s: pd.Series, pick: str) -> dict[str, Any]:
        if s.empty:
            return {"date": None, "return": 0.0}
        at = s.idxmin() if pick == "min" else s.idxmax()
        return {"date": at.date().isoformat(), "return": float(s[at])}

    def _month(found: dict[str, Any]) -> dict[str, Any]:
        return {**found, "date": found["date"][:7] if found["date"] else None}  # months are named YYYY-MM

    return {
        "calmar": perf["cagr"] / perf["max_drawdown"] if perf["max_drawdown"] > 0 else 0.0,
        "profit_factor": profit_factor(r),
        "longest_drawdown": ({"days": int(longest["days"].iloc[0]),
                              "start": longest["start"].iloc[0].date().isoformat(),
                              "end": longest["end"].iloc[0].date().isoformat(),
                              "recovered": bool(longest["recovered"].iloc[0])}
                             if len(longest) else {"days": 0, "start": None, "end": None, "recovered": True}),
        "worst_day": _day(r, "min"),
        "best_day": _day(r, "max"),
        "worst_month": _month(_day(months, "min")),
        "best_month": _month(_day(months, "max")),
        "relative": relative(equity, benchmark),
    }


def return_risk(equity: pd.Series, confidence: float = 0.95) -> dict[str, float]:
    """Per-day (per-session) risk and payoff figures, as quantstats defines them: ``var`` and ``cvar`` (parametric,
    normal, at ``confidence``; negative numbers are losses), ``avg_win`` and ``avg_loss`` (mean of the positive and
    of the negative daily returns), ``payoff`` (their ratio), ``win_days`` (share of days with a gain among the
    days that moved) and ``expectancy`` (``win_days * avg_win + (1 - win_days) * avg_loss``).

    >>> eq = pd.Series([100.0, 101.0, 99.0, 100.0, 102.0], index=pd.bdate_range("2022-01-03", periods=5))
    >>> round(return_risk(eq)["payoff"], 4)
    0.675
    """
    r = daily_returns(session_equity(equity)).dropna()
    moved = r[r != 0]
    if len(r) < 2:
        return {k: 0.0 for k in ("var", "cvar", "avg_win", "avg_loss", "payoff", "win_days", "expectancy")}
    mu, sigma = float(r.mean()), float(r.std(ddof=1))
    alpha = 1.0 - confidence
    if sigma > 0:
        var = NormalDist(mu, sigma).inv_cdf(alpha)
        cvar = mu - sigma * NormalDist().pdf(NormalDist().inv_cdf(alpha)) / alpha  # the normal's expected shortfall
    else:
        var = cvar = mu
    wins, losses = r[r > 0], r[r < 0]
    avg_win = float(wins.mean()) if len(wins) else 0.0
    avg_loss = float(losses.mean()) if len(losses) else 0.0
    win_days = float((moved > 0).mean()) if len(moved) else 0.0
    return {"var": float(var), "cvar": float(cvar), "avg_win": avg_win, "avg_loss": avg_loss,
            "payoff": avg_win / -avg_loss if avg_loss < 0 else 0.0, "win_days": win_days,
            "expectancy": win_days * avg_win + (1.0 - win_days) * avg_loss}


def rolling_beta(equity: pd.Series, benchmark: pd.Series, window: int = 126) -> pd.Series:
    """Beta to the benchmark over the last ``window`` days (sessions), ``corr * std(r) / std(b)`` as quantstats'
    ``rolling_greeks``; NaN until the window is full."""
    r, b = daily_returns(session_equity(equity)), daily_returns(session_equity(benchmark))
    corr = r.rolling(window).corr(b)
    return corr * r.rolling(window).std() / b.rolling(window).std().replace(0, np.nan)


def eoy_table(equity: pd.Series, benchmark: pd.Series) -> pd.DataFrame:
    """End of year: each calendar year's compounded return of the strategy and the benchmark, their ratio
    (``multiplier``) and whether the strategy ``won``; as quantstats' EOY table (a partial first or last year
    counts the days inside the run).

    >>> idx = pd.bdate_range("2021-12-30", periods=4)
    >>> eoy_table(pd.Series([100.0, 110.0, 121.0, 121.0], idx), pd.Series([100.0, 100.0, 105.0, 105.0], idx)).round(3).values.tolist()
    [[2021, 0.1, 0.0, nan, True], [2022, 0.1, 0.05, 2.0, True]]
    """
    s, b = period_returns(equity, "Y"), period_returns(benchmark, "Y")
    b = b.reindex(s.index).fillna(0.0)
    mult = (s / b.where(b != 0)).astype("float64")
    return pd.DataFrame({"year": s.index.year, "strategy": s.to_numpy(), "benchmark": b.to_numpy(),
                         "multiplier": mult.to_numpy(), "won": (s > b).to_numpy()})
