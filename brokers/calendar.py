"""The New York Stock Exchange's sessions and clock ("XNYS"), from the session table of ``marketdata.sessions``.

Holidays, weekends and early closes are those of ``exchange_calendars`` (the table is its calendar, bundled so
that a cold process need not build it); times are ``America/New_York`` so daylight saving is handled by
``zoneinfo``, not by fixed UTC offsets. The paper broker and replayed cycles read the market from here.

Example:
    >>> import datetime as dt
    >>> cal = MarketCalendar()
    >>> cal.session(dt.date(2022, 7, 4)) is None                  # Independence Day
    True
    >>> cal.session(dt.date(2022, 11, 25)).close.strftime("%H:%M")  # the day after Thanksgiving closes early
    '13:00'
    >>> cal.session(dt.date(2022, 3, 14)).open.isoformat()          # the first Monday of daylight saving time
    '2022-03-14T09:30:00-04:00'
    >>> cal.previous_session(dt.date(1990, 1, 2))
    Traceback (most recent call last):
    ...
    brokers.base.BrokerError: the XNYS calendar has no session before 1990-01-02 (it starts on 1990-01-02)
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from brokers.base import BrokerError, Clock, Session
from marketdata.sessions import SessionTable, session_table

NEW_YORK = ZoneInfo("America/New_York")


def as_aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` with a timezone; a naive value is taken as New York time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=NEW_YORK)


def _new_york(utc_ns: int) -> dt.datetime:
    # Opens and closes are whole minutes, so whole seconds lose nothing.
    return dt.datetime.fromtimestamp(int(utc_ns) // 1_000_000_000, tz=NEW_YORK)


class MarketCalendar:
    """Regular sessions of one exchange (default NYSE) with their open and close in New York time."""

    def __init__(self, name: str = "XNYS") -> None:
        self.name = name
        self._table: SessionTable = session_table(name)

    def _covered(self, day: dt.date) -> None:
        first, last = self._table.first, self._table.last
        if not first <= day <= last:
            raise BrokerError(f"the {self.name} calendar covers {first} to {last}, not {day}")

    def session(self, day: dt.date) -> Session | None:
        """The session on ``day``, or ``None`` on weekends and holidays."""
        self._covered(day)
        row = self._table.locate(day)
        return None if row is None else self._session(row)

    def _session(self, row: int) -> Session:
        table = self._table
        return Session(date=table.days[row].astype(dt.date), open=_new_york(table.opens[row]),
                       close=_new_york(table.closes[row]))

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Every session from ``start`` to ``end`` inclusive (the :class:`brokers.base.Broker` ``calendar`` call)."""
        self._covered(start)
        self._covered(end)
        rows = self._table.span(start, end)
        return [self._session(row) for row in range(rows.start, rows.stop)]

    def previous_session(self, day: dt.date) -> dt.date:
        """The last session strictly before ``day``."""
        self._covered(day)
        row = self._table.before(day)
        if row is None:
            raise BrokerError(f"the {self.name} calendar has no session before {day} "
                              f"(it starts on {self._table.first})")
        return self._table.days[row].astype(dt.date)

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
        row = self._table.after(day)
        if row is None:
            raise BrokerError(f"the {self.name} calendar has no session after {day} (it ends on {self._table.last})")
        return self._session(row)
