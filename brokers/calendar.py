"""The New York Stock Exchange's sessions and clock from ``exchange_calendars`` ("XNYS").

Holidays, weekends and early closes come from the calendar; times are ``America/New_York`` so daylight saving is
handled by ``zoneinfo``, not by fixed UTC offsets. The paper broker and replayed cycles read the market from here.

Example:
    >>> import datetime as dt
    >>> cal = MarketCalendar()
    >>> cal.session(dt.date(2022, 7, 4)) is None                  # Independence Day
    True
    >>> cal.session(dt.date(2022, 11, 25)).close.strftime("%H:%M")  # the day after Thanksgiving closes early
    '13:00'
    >>> cal.session(dt.date(2022, 3, 14)).open.isoformat()          # the first Monday of daylight saving time
    '2022-03-14T09:30:00-04:00'
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import pandas as pd

from brokers.base import BrokerError, Clock, Session

NEW_YORK = ZoneInfo("America/New_York")
_FIRST_DAY = "1990-01-02"  # the bundled sample starts in 1990, so replays need sessions that far back


@lru_cache(maxsize=4)
def _exchange_calendar(name: str):
    import exchange_calendars  # about 0.2 s; only cycles that look at the market pay for it

    return exchange_calendars.get_calendar(name, start=_FIRST_DAY)


def as_aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` with a timezone; a naive value is taken as New York time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=NEW_YORK)


class MarketCalendar:
    """Regular sessions of one exchange (default NYSE) with their open and close in New York time."""

    def __init__(self, name: str = "XNYS") -> None:
        self.name = name
        self._cal = _exchange_calendar(name)

    def _covered(self, day: dt.date) -> None:
        first, last = self._cal.first_session.date(), self._cal.last_session.date()
        if not first <= day <= last:
            raise BrokerError(f"the {self.name} calendar covers {first} to {last}, not {day}")

    def session(self, day: dt.date) -> Session | None:
        """The session on ``day``, or ``None`` on weekends and holidays."""
        self._covered(day)
        label = pd.Timestamp(day)
        if not self._cal.is_session(label):
            return None
        return self._session(label)

    def _session(self, label: pd.Timestamp) -> Session:
        return Session(
            date=label.date(),
            open=self._cal.session_open(label).tz_convert(NEW_YORK).to_pydatetime(),
            close=self._cal.session_close(label).tz_convert(NEW_YORK).to_pydatetime(),
        )

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Every session from ``start`` to ``end`` inclusive (the :class:`brokers.base.Broker` ``calendar`` call)."""
        self._covered(start)
        self._covered(end)
        return [self._session(label) for label in self._cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]

    def previous_session(self, day: dt.date) -> dt.date:
        """The last session strictly before ``day``."""
        self._covered(day)
        return self._cal.date_to_session(pd.Timestamp(day) - pd.Timedelta(days=1), direction="previous").date()

    def clock(self, now: dt.datetime) -> Clock:
        """Is the market open at ``now``, and when does it next open and close (Alpaca's ``/v2/clock`` shape)."""
        now = as_aware(now).astimezone(NEW_YORK)
        day = now.date()
        self._covered(day)
        today = self.session(day)
        if today is not None and today.open <= now < today.close:
            return Clock(now=now, is_open=True, next_open=self._next_session(day).open, next_close=today.close)
        upcoming = today if today is not None and now < today.open else self._next_session(day)
        return Clock(now=now, is_open=False, next_open=upcoming.open, next_close=upcoming.close)

    def _next_session(self, day: dt.date) -> Session:
        label = self._cal.date_to_session(pd.Timestamp(day) + pd.Timedelta(days=1), direction="next")
        return self._session(label)
