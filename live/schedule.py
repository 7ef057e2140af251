"""When a cycle may trade: the trading date and 15-minute slot of a moment, and the allowed window of a session.

An intraday cadence (``15min``) decides at each slot of the window (``strategies.cadence.Cadence.slots``); a
cycle between two slots belongs to the earlier one, decides on the bars complete at that slot (not at its own
moment, so a late retry sees the same bars) and marks that slot, not the day.

Example:
    >>> import datetime as dt
    >>> from brokers.calendar import NEW_YORK, MarketCalendar
    >>> now = dt.datetime(2022, 6, 1, 15, 45, tzinfo=NEW_YORK)
    >>> slot_of(now)
    63
    >>> session = MarketCalendar().session(now.date())
    >>> closed_reason(now, session, after_open_minutes=15, before_close_minutes=10) is None
    True
    >>> closed_reason(now.replace(hour=9, minute=40), session, 15, 10)
    'before the trading window, which opens at 09:45 New York time on 2022-06-01'
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from brokers.base import Session
from brokers.calendar import NEW_YORK, as_aware
from live.config import SLOT_MINUTES, InputError
from strategies.cadence import Cadence


def new_york(moment: dt.datetime) -> dt.datetime:
    return as_aware(moment).astimezone(NEW_YORK)


def slot_of(now: dt.datetime) -> int:
    """The number of the 15-minute slot of the New York day that ``now`` falls in (0..95)."""
    local = new_york(now)
    return (local.hour * 60 + local.minute) // SLOT_MINUTES


def window(session: Session, after_open_minutes: int, before_close_minutes: int) -> tuple[dt.datetime, dt.datetime]:
    """Start and end of the part of ``session`` in which orders are placed."""
    return (session.open + dt.timedelta(minutes=after_open_minutes),
            session.close - dt.timedelta(minutes=before_close_minutes))


def closed_reason(now: dt.datetime, session: Session | None, after_open_minutes: int,
                  before_close_minutes: int) -> str | None:
    """Why a cycle at ``now`` must not trade, or ``None`` when it may."""
    local = new_york(now)
    if session is None:
        return f"no session on {local.date()} ({local:%A}: weekend or exchange holiday)"
    start, end = window(session, after_open_minutes, before_close_minutes)
    if local < start:
        return f"before the trading window, which opens at {start:%H:%M} New York time on {session.date}"
    if local >= end:
        early = " (early close)" if session.close.time() < dt.time(16, 0) else ""
        return (f"after the trading window, which closed at {end:%H:%M} New York time on {session.date}; "
                f"the market closes at {session.close:%H:%M}{early}")
    return None


@dataclass(frozen=True)
class SlotMark:
    """The daybook key of one intraday slot: ``isoformat()`` names its mark (``2022-06-01T0945``), one per slot."""

    day: dt.date
    at: dt.datetime

    def isoformat(self) -> str:
        return f"{self.day.isoformat()}T{self.at:%H%M}"


def current_slot(now: dt.datetime, session: Session, cadence: Cadence, after_open_minutes: int,
                 before_close_minutes: int) -> dt.datetime | None:
    """The intraday slot ``now`` belongs to (the latest one at or before it), or ``None`` (daily, or before the
    first slot).

    >>> from brokers.calendar import MarketCalendar
    >>> session = MarketCalendar().session(dt.date(2022, 6, 1))
    >>> current_slot(dt.datetime(2022, 6, 1, 10, 7, tzinfo=NEW_YORK), session, Cadence.parse("15min"), 15, 5)
    datetime.datetime(2022, 6, 1, 10, 0, tzinfo=zoneinfo.ZoneInfo(key='America/New_York'))
    """
    if not cadence.intraday:
        return None
    local = new_york(now)
    slots = cadence.slots(session.open.astimezone(NEW_YORK), session.close.astimezone(NEW_YORK),
                          after_open_minutes, before_close_minutes)
    earlier = [s for s in slots if s <= local]
    return earlier[-1] if earlier else None


def decision_key(now: dt.datetime, session: Session, cadence: Cadence, after_open_minutes: int,
                 before_close_minutes: int) -> dt.date | SlotMark:
    """What the daybook marks for a decision at ``now``: the date (daily) or the slot (intraday)."""
    slot = current_slot(now, session, cadence, after_open_minutes, before_close_minutes)
    local = new_york(now)
    return local.date() if slot is None else SlotMark(local.date(), slot)


def decision_due(now: dt.datetime, session: Session, cadence: Cadence, decided: dict | None,
                 after_open_minutes: int = 15, before_close_minutes: int = 5) -> str | None:
    """Why no decision is made at ``now`` under ``cadence``, or ``None`` when it is due (daily: once a day;
    intraday: once per slot, ``decided`` being that slot's mark).

    >>> from brokers.calendar import MarketCalendar
    >>> session = MarketCalendar().session(dt.date(2022, 6, 1))
    >>> decision_due(dt.datetime(2022, 6, 1, 10, 15, tzinfo=NEW_YORK), session, Cadence(), None)
    "before today's decision time, 15:45 New York time (daily cadence)"
    >>> decision_due(dt.datetime(2022, 6, 1, 15, 52, tzinfo=NEW_YORK), session, Cadence(), None) is None
    True
    """
    local = new_york(now)
    if cadence.intraday:
        slot = current_slot(now, session, cadence, after_open_minutes, before_close_minutes)
        if slot is None:
            return f"before the first {cadence.kind} slot of the day"
        if decided is not None:
            return (f"the {slot:%H:%M} slot's decision was made already (cycle {decided.get('cycle_id')}); this "
                    f"cycle only reconciles")
        return None
    at = cadence.decision_moment(session.date, session.close.astimezone(NEW_YORK).time())
    if local.time() < at:
        return f"before today's decision time, {at:%H:%M} New York time ({cadence.kind} cadence)"
    if decided is not None:
        return f"today's decision was made already (cycle {decided.get('cycle_id')}); this cycle only reconciles"
    return None


def parse_moment(value: object) -> dt.datetime:
    """An ISO 8601 time (``2022-06-01T15:45:00-04:00``; without an offset it is New York time).

    >>> parse_moment("2022-06-01T15:45").isoformat()
    '2022-06-01T15:45:00-04:00'
    """
    if isinstance(value, dt.datetime):
        return as_aware(value)
    try:
        return as_aware(dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))
    except ValueError:
        raise InputError(f"now must be an ISO 8601 time such as 2022-06-01T15:45:00-04:00, got {value!r}") from None
