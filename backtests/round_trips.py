"""The book of a run, rebuilt from its executed orders: daily positions and weights, round trips, per-symbol P&L
and concentration.

Nothing here reads the Backtrader broker: positions come from replaying ``result.trades`` over
``result.closes``, and :func:`replay` checks that this replay gives back the equity Backtrader recorded, so
``positions.csv`` and ``round_trips.csv`` describe the very run that ``equity.csv`` does.

Example:
    >>> import pandas as pd
    >>> days = pd.bdate_range("2022-01-03", periods=3)
    >>> closes = pd.DataFrame({"A": [10.0, 11.0, 12.0]}, index=days)
    >>> trades = pd.DataFrame([{"date": days[1], "symbol": "A", "side": "buy", "qty": 10, "price": 11.0,
    ...                         "value": 110.0, "commission": 0.0}])
    >>> equity = pd.DataFrame({"equity": [1000.0, 1000.0, 1010.0], "cash": [1000.0, 890.0, 890.0]}, index=days)
    >>> book = replay(trades, closes, equity, cash=1000.0)
    >>> book.max_error, book.weights["A"].round(3).tolist()
    (0.0, [0.0, 0.11, 0.119])
    >>> round_trips(trades, closes.loc[days])[["status", "pnl"]].values.tolist()
    [['open', 10.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ROUND_TRIP_COLUMNS = ["symbol", "entry_date", "exit_date", "qty", "entry_price", "exit_price", "pnl", "return",
                      "holding_days", "bars", "status", "trip_pnl"]


@dataclass
class Book:
    """Daily holdings rebuilt from the orders: share counts, cash, market values and weights of equity."""

    qty: pd.DataFrame  # shares held at each bar's close, one column per symbol
    cash: pd.Series
    values: pd.DataFrame  # qty x close
    equity: pd.Series  # cash + values, as replayed
    max_error: float  # largest |replayed - recorded| equity, in money

    @property
    def weights(self) -> pd.DataFrame:
        """Each symbol's share of equity at each bar's close."""
        return self.values.div(self.equity, axis=0)


@dataclass(frozen=True)
class ConcentrationRule:
    """Warn when one name is more than ``weight`` of equity on more than ``share_of_days`` of the bars."""

    weight: float = 0.5
    share_of_days: float = 0.10


def on_equity_clock(trades: pd.DataFrame, closes: pd.DataFrame, equity_index: pd.DatetimeIndex,
                    interval: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trades and closes stamped as the equity curve is, for :func:`replay` and :func:`round_trips`.

    Daily runs need nothing: a row is a date, fills and closes carry it. An intraday run's equity row is stamped
    at the slot and valued at the close of the bar that ended there, while closes are stamped at their bar's
    start and a fill at the start of the bar whose open filled it; both move one bar on, onto the row whose
    valuation first includes them (a fill in the session's last bar, which ends at the close and has no slot,
    onto the next session's first row).

    >>> bars = pd.DatetimeIndex(["2022-06-01 09:30", "2022-06-01 09:45"])
    >>> closes = pd.DataFrame({"A": [10.0, 11.0]}, index=bars)
    >>> fills = pd.DataFrame([{"date": bars[1], "symbol": "A", "side": "buy", "qty": 1, "price": 10.5,
    ...                        "value": 10.5, "commission": 0.0}])
    >>> t, c = on_equity_clock(fills, closes, bars + pd.Timedelta(minutes=15), "15m")
    >>> str(t["date"].iloc[0]), c["A"].tolist()
    ('2022-06-01 10:00:00', [10.0, 11.0])
    """
    if interval in (None, "1d"):
        return trades, closes.reindex(equity_index)
    from marketdata.bars import parse_interval

    length = parse_interval(interval).length
    moved = trades.copy()
    rows = pd.DatetimeIndex(equity_index)
    ends = pd.DatetimeIndex(pd.to_datetime(moved["date"])) + length
    at = rows.searchsorted(ends)
    moved["date"] = [rows[i] if i < len(rows) else e for i, e in zip(at, ends)]
    shifted = closes.copy()
    shifted.index = pd.DatetimeIndex(closes.index) + length
    return moved, shifted.reindex(equity_index)


def _signed(trades: pd.DataFrame) -> pd.DataFrame:
    t = trades.copy()
    t["date"] = pd.to_datetime(t["date"])
    sign = np.where(t["side"] == "buy", 1.0, -1.0)
    t["dq"] = sign * t["qty"].astype("float64")
    t["cash_flow"] = -sign * t["value"].astype("float64") - t["commission"].astype("float64")
    if "fees" in t:
        t["cash_flow"] -= t["fees"].astype("float64").fillna(0.0)
    return t


def replay(trades: pd.DataFrame, closes: pd.DataFrame, equity: pd.DataFrame, cash: float) -> Book:
    """Replay the orders over the closes on ``equity``'s bars; ``max_error`` compares with its ``equity`` column.

    An order filled on bar t is in bar t's closing position (fills happen at the open).
    """
    dates = pd.DatetimeIndex(equity.index)
    symbols = list(closes.columns)
    t = _signed(trades)
    daily_q = t.pivot_table(index="date", columns="symbol", values="dq", aggfunc="sum") if len(t) else None
    qty = (daily_q.reindex(index=dates, columns=symbols).fillna(0.0).cumsum()
           if daily_q is not None else pd.DataFrame(0.0, index=dates, columns=symbols))
    flows = t.groupby("date")["cash_flow"].sum() if len(t) else pd.Series(dtype="float64")
    cash_s = cash + flows.reindex(dates).fillna(0.0).cumsum()
    prices = closes.reindex(dates).ffill()[symbols]
    held = qty.to_numpy()
    # np.where on the whole block, not DataFrame.where's walk over 500 columns; copy=False keeps the block laid
    # out as DataFrame.where leaves it, so sums across symbols add in the same order (identical equity replay)
    values = pd.DataFrame(np.where(held != 0, held * prices.to_numpy(), 0.0), index=qty.index, columns=qty.columns,
                          copy=False)
    replayed = cash_s + values.sum(axis=1)
    error = float((replayed - equity["equity"].astype("float64")).abs().max()) if len(dates) else 0.0
    return Book(qty=qty, cash=cash_s, values=values, equity=replayed, max_error=error)


def round_trips(trades: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """One row per selling order (sold shares against the average cost since the position was last flat), then
    one ``open`` row per position still held, marked at the last close.

    ``status``: ``closed`` for the sell that makes the position flat (the end of a round trip), ``trim`` for a
    partial sell that leaves shares held (a resize: not a round trip of its own), ``open`` for what is still held.
    ``pnl`` is each row's own profit, net of both sides' commissions and fees (the entry's shared pro rata), so
    the column sums to the equity change; ``trip_pnl`` (on ``closed`` rows) is the whole round trip's profit,
    its trims included: the figure a win rate counts. ``return`` is pnl over the cost including the entry
    commission; ``holding_days`` are calendar days, ``bars`` trading days.
    """
    dates = pd.DatetimeIndex(closes.index)
    rows: list[dict[str, Any]] = []
    book: dict[str, dict[str, Any]] = {}
    t = trades.copy()
    t["date"] = pd.to_datetime(t["date"])
    t["charge_"] = t["commission"].astype("float64") + (t["fees"].astype("float64").fillna(0.0) if "fees" in t else 0.0)
    for tr in t.sort_values(["date"], kind="stable").itertuples(index=False):
        pos = book.setdefault(tr.symbol, {"qty": 0, "cost": 0.0, "shares_cost": 0.0, "entry": tr.date,
                                          "realised": 0.0})
        if tr.side == "buy":
            if pos["qty"] == 0:
                pos["entry"], pos["realised"] = tr.date, 0.0
            pos["qty"] += int(tr.qty)
            pos["cost"] += float(tr.value) + float(tr.charge_)
            pos["shares_cost"] += float(tr.value)
            continue
        if pos["qty"] <= 0:
            continue
        sold = min(int(tr.qty), pos["qty"])
        share = sold / pos["qty"]
        cost, shares_cost = pos["cost"] * share, pos["shares_cost"] * share
        proceeds = (float(tr.value) - float(tr.charge_)) * sold / int(tr.qty)
        pos["realised"] += proceeds - cost
        flat = sold == pos["qty"]
        row = _row(tr.symbol, pos["entry"], tr.date, sold, shares_cost / sold, float(tr.price), proceeds - cost, cost,
                   dates, "closed" if flat else "trim")
        row["trip_pnl"] = pos["realised"] if flat else np.nan
        rows.append(row)
        pos["qty"] -= sold
        pos["cost"] -= cost
        pos["shares_cost"] -= shares_cost
    last = closes.ffill().iloc[-1] if len(closes) else pd.Series(dtype="float64")
    for symbol, pos in book.items():
        if pos["qty"] > 0:
            mark = float(last[symbol])
            row = _row(symbol, pos["entry"], pd.NaT, pos["qty"], pos["shares_cost"] / pos["qty"], mark,
                       mark * pos["qty"] - pos["cost"], pos["cost"], dates, "open")
            row["trip_pnl"] = np.nan
            rows.append(row)
    frame = pd.DataFrame(rows, columns=ROUND_TRIP_COLUMNS)
    return frame.astype({"qty": "int64", "bars": "int64"}) if len(frame) else frame


def cents_summing_to_total(values: pd.Series) -> pd.Series:
    """``values`` in cents such that they add up to their own total rounded to the cent: each is rounded at
    its running sum (the difference of consecutive rounded running sums), so no row is off by a cent or more
    and the column never drifts (136 rows each rounded alone drifted 2 cents off the equity change).

    >>> cents_summing_to_total(pd.Series([0.004, 0.004, 0.004])).tolist(), round(0.004 * 3, 2)
    ([0.0, 0.01, 0.0], 0.01)
    """
    running = values.astype("float64").fillna(0.0).cumsum().round(2)
    return running.diff().fillna(running).round(2).where(values.notna())


def _row(symbol, entry, exit_, qty, entry_price, exit_price, pnl, cost, dates, status) -> dict[str, Any]:
    end = dates[-1] if status == "open" else exit_
    return {"symbol": symbol, "entry_date": entry, "exit_date": exit_, "qty": qty, "entry_price": entry_price,
            "exit_price": exit_price, "pnl": pnl, "return": pnl / cost if cost else 0.0,
            "holding_days": int((end - entry).days),
            "bars": int(dates.searchsorted(end) - dates.searchsorted(entry)), "status": status}


def by_symbol(trips: pd.DataFrame, book: Book) -> pd.DataFrame:
    """Per symbol: P&L (closed, open and total, net of commissions; ``closed_pnl`` includes trims), round trips,
    trims, win rate over round trips, mean holding days of closed trips and bars held; sorted by absolute total
    P&L, largest first."""
    symbols = list(book.qty.columns)
    held = book.qty > 0
    bars_held = held.sum()
    # Only the names that traded have rows to add up: the rest of a 500-name universe gets its zero row directly.
    active = set(trips["symbol"]) | {s for s, ever in held.any().items() if ever}
    rows = []
    for s in symbols:
        if s not in active:
            rows.append({"symbol": s, "pnl": 0.0, "closed_pnl": 0.0, "open_pnl": 0.0, "round_trips": 0, "trims": 0,
                         "win_rate": float("nan"), "mean_holding_days": float("nan"), "bars_held": 0})
            continue
        mine = trips[trips["symbol"] == s]
        closed = mine[mine["status"] == "closed"]
        realised = mine[mine["status"] != "open"]
        rows.append({
            "symbol": s,
            "pnl": float(mine["pnl"].sum()),
            "closed_pnl": float(realised["pnl"].sum()),
            "open_pnl": float(mine.loc[mine["status"] == "open", "pnl"].sum()),
            "round_trips": int(len(closed)),
            "trims": int((mine["status"] == "trim").sum()),
            "win_rate": float((closed["trip_pnl"] > 0).mean()) if len(closed) else float("nan"),
            "mean_holding_days": float(closed["holding_days"].mean()) if len(closed) else float("nan"),
            "bars_held": int(bars_held[s]),
        })
    frame = pd.DataFrame(rows)
    order = frame["pnl"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def concentration(book: Book) -> pd.DataFrame:
    """Per bar: invested share of equity, the largest single weight and its symbol, and the number of names."""
    w = book.weights.fillna(0.0)
    held = book.qty > 0
    top = w.idxmax(axis=1).where(held.any(axis=1))
    return pd.DataFrame({"exposure": w.sum(axis=1), "max_weight": w.max(axis=1), "max_symbol": top,
                         "names": held.sum(axis=1)}, index=w.index)


def concentration_summary(conc: pd.DataFrame, rule: ConcentrationRule = ConcentrationRule()) -> dict[str, Any]:
    """How concentrated the book was, and ``warning`` (a sentence, or None) under ``rule``."""
    bars = len(conc)
    over = conc[conc["max_weight"] > rule.weight]
    summary: dict[str, Any] = {
        "max_weight": float(conc["max_weight"].max()) if bars else 0.0,
        "max_weight_symbol": None, "max_weight_date": None,
        "mean_max_weight": float(conc["max_weight"].mean()) if bars else 0.0,
        "mean_names": float(conc["names"].mean()) if bars else 0.0,
        "threshold": rule.weight, "days_over_threshold": int(len(over)), "bars": bars,
        "top_symbol_over_threshold": None, "top_symbol_days": 0, "warning": None,
    }
    if bars and summary["max_weight"] > 0:
        at = conc["max_weight"].idxmax()
        summary["max_weight_symbol"], summary["max_weight_date"] = str(conc.at[at, "max_symbol"]), at.date().isoformat()
    if len(over):
        counts = over["max_symbol"].value_counts()
        name = str(sorted(counts.index, key=lambda s: (-counts[s], s))[0])
        summary["top_symbol_over_threshold"], summary["top_symbol_days"] = name, int(counts[name])
        if len(over) > rule.share_of_days * bars:
            peak = over[over["max_symbol"] == name]["max_weight"]
            unit = "slots" if (conc.index != conc.index.normalize()).any() else "days"  # intraday rows are slots
            summary["warning"] = (
                f"one name held more than {rule.weight:.0%} of equity on {len(over)} of {bars} {unit} "
                f"({len(over) / bars:.0%}); most often {name} ({counts[name]} {unit}, up to {peak.max():.0%} on "
                f"{peak.idxmax().date().isoformat()}); largest weight overall {summary['max_weight']:.0%} "
                f"({summary['max_weight_symbol']} on {summary['max_weight_date']})")
    return summary
