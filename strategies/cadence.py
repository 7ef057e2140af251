"""When a strategy decides: part of its configuration, read by the backtest, the live cycle and the deploy schedule.

``daily`` (the default) decides once per trading day at ``decision_time`` New York time (15:45: the seed's
once-a-day mode). On an early-close day the decision moves to ``early_close_lead`` minutes before the close, so
the bot decides on every trading day, as the backtest does. Intraday cadences (``15min``) come with intraday bars
and are refused until then.

Example:
    >>> c = Cadence.parse("daily", "15:45")
    >>> c.kind, c.decision_time.isoformat(timespec="minutes")
    ('daily', '15:45')
    >>> import datetime as dt
    >>> c.decision_moment(dt.date(2022, 11, 25), close=dt.time(13, 0)).isoformat(timespec="minutes")
    '12:45'
    >>> Cadence.parse("15min")
    Traceback (most recent call last):
    ...
    ValueError: cadence '15min' is intraday, which needs intraday bars and is not supported yet; use daily
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DEFAULT_DECISION_TIME = dt.time(15, 45)


@dataclass(frozen=True)
class Cadence:
    kind: str = "daily"
    decision_time: dt.time = DEFAULT_DECISION_TIME
    early_close_lead: int = 15  # minutes before an early close at which that day's decision is made

    @classmethod
    def parse(cls, text: str | None = None, decision_time: str | dt.time | None = None) -> "Cadence":
        kind = (text or "daily").strip().lower()
        if re.fullmatch(r"(every\s+)?\d+\s*(m|min|mins|minutes|h|hour|hours)", kind):
            raise ValueError(f"cadence {text!r} is intraday, which needs intraday bars and is not supported yet; "
                             f"use daily")
        if kind != "daily":
            raise ValueError(f"cadence must be daily, got {text!r}")
        return cls(kind, parse_time(decision_time) if decision_time is not None else DEFAULT_DECISION_TIME)

    def decision_moment(self, day: dt.date, close: dt.time) -> dt.time:
        """The New York time of ``day``'s decision, given that session's close."""
        lead = (dt.datetime.combine(day, close) - dt.timedelta(minutes=self.early_close_lead)).time()
        return min(self.decision_time, lead)

    def to_dict(self) -> dict[str, str]:
        return {"cadence": self.kind, "decision_time": self.decision_time.isoformat(timespec="minutes")}


def parse_time(value: str | dt.time) -> dt.time:
    """``HH:MM`` New York time, within the regular session (09:30-16:00).

    >>> parse_time("9:45").isoformat(timespec="minutes")
    '09:45'
    """
    if isinstance(value, dt.time):
        moment = value
    else:
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ValueError(f"decision_time must be HH:MM New York time, got {value!r}")
        moment = dt.time(int(match.group(1)), int(match.group(2)))
    if not dt.time(9, 30) < moment < dt.time(16, 0):
        raise ValueError(f"decision_time must fall inside the regular session (after 09:30, before 16:00), got "
                         f"{moment:%H:%M}")
    return moment
