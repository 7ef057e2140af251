"""Write a SYNTHETIC intraday CSV (never market data): bars on the real XNYS sessions with an intraday pattern.

Each symbol's log price is a slow drift plus a random walk, plus a U-shaped intraday pattern that repeats every
session (a dip through midday, recovered into the close) and an overnight gap at each open. The pattern is what
an intraday forecast can learn; the random walk is what it cannot. Used by the tests of the 15-minute backtest,
by ``examples/seed_15min.toml``'s test, and by the intraday model comparison in ``docs/intraday.md``.

    python examples/synthetic_intraday.py runs/synthetic_15m.csv --start 2022-05-02 --end 2022-06-30 --bar 15m

Example:
    >>> frame = synthetic_frame("2022-05-24", "2022-05-25", bar="15m", symbols=("AAA",))
    >>> len(frame), str(frame.index[0]), str(frame.index[-1])      # two sessions of 26 bars
    (52, '2022-05-24 09:30:00', '2022-05-25 15:45:00')
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE")
BAR_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}


def synthetic_frame(start: str | dt.date, end: str | dt.date, *, bar: str = "15m", symbols=SYMBOLS, seed: int = 7,
                    pattern: float = 0.004, noise: float = 0.0015, gap: float = 0.004) -> pd.DataFrame:
    """Long-format SYNTHETIC bars (index: bar start, New York time; columns symbol, open, high, low, close).

    ``pattern``: amplitude of the repeating intraday shape (log price); ``noise``: the per-bar random walk's
    step; ``gap``: the overnight jump's standard deviation (all as fractions of price)."""
    from marketdata.bars import session_hours

    minutes = BAR_MINUTES[bar]
    hours = session_hours(pd.Timestamp(start).date(), pd.Timestamp(end).date())
    stamps, phase, new_day = [], [], []
    for o, c in zip(hours["open"], hours["close"]):
        day = pd.date_range(o, c, freq=f"{minutes}min", inclusive="left")
        stamps.append(day.values)
        # the shape follows minutes since the open, so an early close just cuts it short
        phase.append(((day - o) / pd.Timedelta(minutes=390)).to_numpy(dtype="float64"))
        new_day.append(np.r_[1.0, np.zeros(len(day) - 1)])
    index = pd.DatetimeIndex(np.concatenate(stamps), name="timestamp")
    phase, new_day = np.concatenate(phase), np.concatenate(new_day)
    rng = np.random.default_rng(seed)
    n = len(index)
    shape = -np.sin(np.pi * phase)  # 0 at the open, lowest at midday, back to 0 at the close
    frames = []
    for k, symbol in enumerate(symbols):
        walk = np.cumsum(rng.normal(0.00002 * (k - 2), noise, n) + new_day * rng.normal(0, gap, n))
        log_close = np.log(50 + 10 * k) + walk + pattern * (1 + 0.25 * k) * shape
        close = np.exp(log_close)
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, noise / 4, n))
        spread = np.abs(rng.normal(0, noise / 2, n))
        high = np.maximum(open_, close) * (1 + spread)
        low = np.minimum(open_, close) * (1 - spread)
        frames.append(pd.DataFrame({"symbol": symbol, "open": open_, "high": high, "low": low, "close": close},
                                   index=index))
    return pd.concat(frames).round(4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python examples/synthetic_intraday.py",
                                description="Write a SYNTHETIC intraday CSV (long format) on the XNYS sessions.")
    p.add_argument("out", type=Path)
    p.add_argument("--start", default="2022-05-02")
    p.add_argument("--end", default="2022-06-30")
    p.add_argument("--bar", choices=sorted(BAR_MINUTES), default="15m")
    p.add_argument("--symbols", default=",".join(SYMBOLS))
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    frame = synthetic_frame(args.start, args.end, bar=args.bar, symbols=tuple(args.symbols.split(",")),
                            seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index_label="timestamp", date_format="%Y-%m-%d %H:%M")
    print(f"wrote {args.out}: {len(frame)} SYNTHETIC {args.bar} bars, {frame['symbol'].nunique()} symbols, "
          f"{frame.index.min():%Y-%m-%d} to {frame.index.max():%Y-%m-%d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
