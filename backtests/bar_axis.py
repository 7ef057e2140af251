"""Where a run's bars go on a chart's x axis: dates for a daily run; for an intraday run the bar's number, so
that nights, weekends and holidays take no room and no line is drawn straight across them, with the ticks
labelled by the session's date (matplotlib would otherwise put 15-minute slots on a calendar axis, or, given
bare numbers, on one starting in 1970).

Example:
    >>> import pandas as pd
    >>> slots = pd.DatetimeIndex(["2022-06-01 09:45", "2022-06-01 15:45", "2022-06-02 09:45", "2022-06-02 15:45"])
    >>> axis = BarAxis(slots)
    >>> axis.x(slots[2:]).tolist(), axis.x_sessions(pd.DatetimeIndex(["2022-06-01", "2022-06-02"])).tolist()
    ([2.0, 3.0], [1.0, 3.0])
    >>> axis.ticks()
    ([0.0, 2.0], ['2022-06-01', '2022-06-02'])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtests.metrics import is_intraday

MAX_TICKS = 8


class BarAxis:
    """The x positions of one run's bars (``index``: its equity curve's index)."""

    def __init__(self, index) -> None:
        self.index = pd.DatetimeIndex(index)
        self.intraday = is_intraday(self.index)

    def x(self, stamps):
        """Positions of ``stamps`` (bar times): the stamps themselves for a daily run, else the number of the last
        bar at or before each (fractional bars are not needed: every stamp drawn is a bar's)."""
        stamps = pd.DatetimeIndex(stamps)
        if not self.intraday:
            return stamps
        return np.clip(self.index.searchsorted(stamps, side="right") - 1, 0, None).astype("float64")

    def x_sessions(self, dates):
        """Positions of per-session values (indexed by the session's date): the session's last bar."""
        dates = pd.DatetimeIndex(dates)
        if not self.intraday:
            return dates
        return np.clip(self.index.searchsorted(dates.normalize() + pd.Timedelta(days=1)) - 1, 0, None).astype("float64")

    def ticks(self) -> tuple[list[float], list[str]]:
        """Intraday: the first bar of every n-th session and its date (at most ``MAX_TICKS``)."""
        days = self.index.normalize()
        firsts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        every = max(1, int(np.ceil(len(firsts) / MAX_TICKS)))
        chosen = firsts[::every]
        return [float(i) for i in chosen], [days[i].date().isoformat() for i in chosen]

    def format(self, ax) -> None:
        """Label ``ax``'s x axis: session dates on an intraday run (and a thin line where each session starts)."""
        if not self.intraday:
            return
        where, labels = self.ticks()
        ax.set_xticks(where, labels)
        ax.set_xlim(-0.5, len(self.index) - 0.5)
        ax.set_xlabel("session (one step per slot; nights and weekends take no room)"
                      if len(self.index) else "")
