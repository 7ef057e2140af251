"""When a strategy decides: part of its configuration, read by the backtest, the live cycle and the deploy schedule.

``daily`` (the default) decides once per trading day at ``decision_time`` New York time (15:45: the seed's
once-a-day mode). On an early-close day the decision moves to ``early_close_lead`` minutes before the close, so
the bot decides on every trading day, as the backtest does.

``15min`` (also ``15m``, ``every 15 minutes``; any N that divides the 390-minute regular session) decides at every
slot of the trading window: from ``after_open`` minutes after the open, every N minutes, while before
``before_close`` minutes ahead of the close (the live config's ``TRADE_AFTER_OPEN_MINUTES`` and
``TRADE_BEFORE_CLOSE_MINUTES``, 15 and 5 by default: 09:45 to 15:45 on a normal day, 09:45 to 12:45 on a 13:00
early close). The sessions themselves (holidays, early closes) come from the exchange calendar.

Example:
    >>> c = Cadence.parse("daily", "15:45")
    >>> c.kind, c.decision_time.isoformat(timespec="minutes")
    ('daily', '15:45')
    >>> import datetime as dt
    >>> c.decision_moment(dt.date(2022, 11, 25), close=dt.time(13, 0)).isoformat(timespec="minutes")
    '12:45'
    >>> q = Cadence.parse("every 15 minutes")
    >>> q.kind, q.minutes, q.intraday
    ('15min', 15, True)
    >>> slots = q.slots(dt.datetime(2022, 6, 1, 9, 30), dt.datetime(2022, 6, 1, 16, 0))
    >>> len(slots), slots[0].strftime("%H:%M"), slots[-1].strftime("%H:%M")
    (25, '09:45', '15:45')
    >>> Cadence.parse("60min")
    Traceback (most recent call last):
    ...
    ValueError: cadence '60min' does not divide the 390-minute session (use a divisor such as 5, 10, 15, 30, 65 or 78 minutes)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DEFAULT_DECISION_TIME = dt.time(15, 45)
SESSION_MINUTES = 390  # 09:30 to 16:00: an intraday cadence divides it, so slots line up on every normal day
AFTER_OPEN_MINUTES = 15  # live.config's TRADE_AFTER_OPEN_MINUTES default
BEFORE_CLOSE_MINUTES = 5  # live.config's TRADE_BEFORE_CLOSE_MINUTES default
_INTRADAY = re.compile(r"(?:every\s+)?(\d+)\s*(m|min|mins|minute|minutes|h|hour|hours)")


@dataclass(frozen=True)
class Cadence:
    kind: str = "daily"
    decision_time: dt.time = DEFAULT_DECISION_TIME
    early_close_lead: int = 15  # minutes before an early close at which that day's decision is made
    minutes: int = 0  # intraday: the slot length (0 for daily)

    @classmethod
    def parse(cls, text: str | None = None, decision_time: str | dt.time | None = None) -> "Cadence":
        kind = (text or "daily").strip().lower()
        match = _INTRADAY.fullmatch(kind)
        if match:
            minutes = int(match.group(1)) * (60 if match.group(2).startswith("h") else 1)
            if minutes < 1 or SESSION_MINUTES % minutes:
                divisors = [d for d in (5, 10, 15, 30, 65, 78)]
                raise ValueError(f"cadence {text!r} does not divide the {SESSION_MINUTES}-minute session (use a "
                                 f"divisor such as {', '.join(map(str, divisors[:-1]))} or {divisors[-1]} minutes)")
            return cls(f"{minutes}min", DEFAULT_DECISION_TIME, minutes=minutes)
        if kind != "daily":
            raise ValueError(f"cadence must be daily or every N minutes (e.g. 15min), got {text!r}")
        return cls(kind, parse_time(decision_time) if decision_time is not None else DEFAULT_DECISION_TIME)

    @property
    def intraday(self) -> bool:
        return self.minutes > 0

    def decision_moment(self, day: dt.date, close: dt.time) -> dt.time:
        """The New York time of ``day``'s decision, given that session's close (daily cadence)."""
        lead = (dt.datetime.combine(day, close) - dt.timedelta(minutes=self.early_close_lead)).time()
        return min(self.decision_time, lead)

    def slots(self, open_: dt.datetime, close: dt.datetime, after_open: int = AFTER_OPEN_MINUTES,
              before_close: int = BEFORE_CLOSE_MINUTES) -> list[dt.datetime]:
        """The decision moments of one session (``open_`` and ``close`` in New York time, aware or naive alike).

        Intraday: every ``minutes`` from ``after_open`` minutes after the open while before ``before_close``
        minutes ahead of the close. Daily: the single decision moment.
        """
        if not self.intraday:
            at = self.decision_moment(open_.date(), close.time())
            return [open_.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)]
        first = open_ + dt.timedelta(minutes=after_open)
        end = close - dt.timedelta(minutes=before_close)
        step = dt.timedelta(minutes=self.minutes)
        out = []
        moment = first
        while moment < end:
            out.append(moment)
            moment += step
        return out

    def slot_number(self, moment: dt.datetime) -> int:
        """The slot's number within its New York day (minutes since midnight // slot length): order ids' ``sNN``.

        >>> Cadence.parse("15min").slot_number(dt.datetime(2022, 6, 1, 9, 45))
        39
        """
        return (moment.hour * 60 + moment.minute) // self.minutes

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
