"""Walk-forward evaluation: split trading days into train/test windows, choose on train, stitch the tests.

A window's test period always starts on the bar after its train period ends, so the parameters chosen on train
have never seen the test rows. ``rolling`` windows slide a fixed-length train period; ``anchored`` ones keep
the first train day and grow.

Example:
    >>> import pandas as pd
    >>> days = pd.bdate_range("2022-01-03", periods=10)
    >>> [(w.train_start.day, w.train_end.day, w.test_start.day, w.test_end.day)
    ...  for w in split_windows(days, train=4, test=3)]
    [(3, 6, 7, 11), (6, 11, 12, 14)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import pandas as pd

from backtests import metrics
from clitools import UserError

Scheme = Literal["rolling", "anchored"]

# Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER = {"max_drawdown", "volatility"}
CHOICE_METRICS = ("sharpe", "sortino", "total_return", "cagr", "max_drawdown", "volatility", "win_rate",
                  "final_equity", "excess_return")


@dataclass(frozen=True)
class Window:
    """One walk-forward step: choose on ``train_start..train_end``, report on ``test_start..test_end``."""

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def segment(self, which: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        return (self.train_start, self.train_end) if which == "train" else (self.test_start, self.test_end)

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.number, **{k: getattr(self, k).date().isoformat()
                                          for k in ("train_start", "train_end", "test_start", "test_end")}}


def split_windows(days: Sequence[pd.Timestamp] | pd.DatetimeIndex, train: int, test: int, step: int | None = None,
                  scheme: Scheme = "rolling") -> list[Window]:
    """Full windows over ``days`` (the trading days in range): ``train`` bars, then ``test`` bars, every ``step``.

    ``step`` defaults to ``test``, so test periods tile the range without overlap. Raises :class:`UserError`
    when no full window fits.
    """
    days = pd.DatetimeIndex(days)
    step = test if step is None else step
    if train < 2 or test < 2:
        raise UserError(f"train and test windows need at least 2 bars each, got --train {train} --test {test}")
    if step < 1:
        raise UserError(f"--step must be at least 1 bar, got {step}")
    if scheme not in ("rolling", "anchored"):
        raise UserError(f"scheme must be rolling or anchored, got {scheme!r}")
    if train + test > len(days):
        span = f"{days[0].date()} to {days[-1].date()}" if len(days) else "an empty range"
        raise UserError(f"--train {train} + --test {test} bars do not fit in {len(days)} trading days ({span}); "
                        "shorten the windows or widen --start/--end")
    windows = []
    for k in range(0, (len(days) - train - test) // step + 1):
        test_first = train + k * step
        train_first = 0 if scheme == "anchored" else test_first - train
        windows.append(Window(k, days[train_first], days[test_first - 1], days[test_first],
                              days[test_first + test - 1]))
    return windows


def score(row: dict[str, Any], metric: str) -> float:
    """A train row's score for ``metric``, oriented so that larger is better (NaN scores lowest)."""
    value = row[metric]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return -float(value) if metric in LOWER_IS_BETTER else float(value)


def choose(train_rows: list[dict[str, Any]], metric: str) -> int:
    """Index of the best row of one window's train results; ties go to the first row (grid order).

    Only train results go in: the test rows of the window are not an argument, so they cannot sway the choice.

    Example:
        >>> choose([{"sharpe": 0.5}, {"sharpe": 1.2}, {"sharpe": 1.2}], "sharpe")
        1
        >>> choose([{"max_drawdown": 0.3}, {"max_drawdown": 0.1}], "max_drawdown")
        1
    """
    if not train_rows:
        raise ValueError("no train results to choose from")
    scores = [score(r, metric) for r in train_rows]
    return scores.index(max(scores))


def stitch(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """Chain test-period equity curves (columns ``equity`` and ``benchmark``) into one, compounding returns.

    Each test period starts flat with fresh cash, so only its returns carry over; the stitched curve starts at
    the first period's starting value. Where test periods overlap (``step < test``) a later period contributes
    only the days after the previous one ends.

    Example:
        >>> a = pd.DataFrame({"equity": [100.0, 110.0], "benchmark": [100.0, 100.0]},
        ...                  index=pd.to_datetime(["2022-01-03", "2022-01-04"]))
        >>> b = pd.DataFrame({"equity": [100.0, 50.0], "benchmark": [100.0, 120.0]},
        ...                  index=pd.to_datetime(["2022-01-05", "2022-01-06"]))
        >>> stitch([a, b])["equity"].tolist()
        [100.0, 110.0, 110.0, 55.0]
    """
    pieces = []
    level = {"equity": None, "benchmark": None}
    for number, curve in enumerate(curves):
        if pieces:
            curve = curve[curve.index > pieces[-1].index[-1]]
            if curve.empty:
                continue
        piece = pd.DataFrame(index=curve.index)
        for column in ("equity", "benchmark"):
            values = curve[column].astype("float64")
            start = level[column] if level[column] is not None else float(values.iloc[0])
            piece[column] = start * values / float(values.iloc[0])
            level[column] = float(piece[column].iloc[-1])
        piece["window"] = number
        pieces.append(piece)
    if not pieces:
        return pd.DataFrame(columns=["equity", "benchmark", "window"])
    return pd.concat(pieces)


def stitched_summary(curve: pd.DataFrame) -> dict[str, Any]:
    """Performance of a stitched out-of-sample curve and of its benchmark."""
    strategy = metrics.performance(curve["equity"])
    bench = metrics.performance(curve["benchmark"])
    return {"start": curve.index[0].date().isoformat(), "end": curve.index[-1].date().isoformat(),
            "bars": int(len(curve)), **strategy,
            "benchmark": {k: bench[k] for k in ("total_return", "cagr", "sharpe", "max_drawdown")}}
