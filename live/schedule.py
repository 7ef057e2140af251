"""When a cycle may trade: the trading date and 15-minute slot of a moment, and the allowed window of a session.

The schedule and the broker's clock may disagree by a moment: a cycle up to :data:`CLOCK_TOLERANCE_SECONDS` before
a decision time, slot or window opening counts as at it (a schedule firing at 15:45:00 while the broker reads
15:44:59 still decides). A daily decision has a retry :data:`RETRY_AFTER_MINUTES` later (deploy schedules both),
so a decision left half-done finishes the same day; a cycle at or after the last of them that finds the decision
still unmade reports it missed (:func:`decision_missed`, the ``DecisionsMissed`` metric).

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

CLOCK_TOLERANCE_SECONDS = 5.0  # schedule vs broker clock: 15:44:55 or later counts as 15:45
RETRY_AFTER_MINUTES = 5  # a daily decision's retry (15:50 for 15:45), inside the trading window
_TOLERANCE = dt.timedelta(seconds=CLOCK_TOLERANCE_SECONDS)


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
    if local + _TOLERANCE < start:
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
    earlier = [s for s in slots if s <= local + _TOLERANCE]
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
    if (local + _TOLERANCE).time() < at:
        return f"before today's decision time, {at:%H:%M} New York time ({cadence.kind} cadence)"
    if decided is not None:
        return f"today's decision was made already (cycle {decided.get('cycle_id')}); this cycle only reconciles"
    return None


def retry_moments(cadence: Cadence, day: dt.date, close: dt.time, before_close_minutes: int) -> list[dt.time]:
    """A daily decision's moment and its retry, those inside the trading window (New York times; intraday: none,
    each slot is its own decision).

    >>> retry_moments(Cadence(), dt.date(2022, 6, 1), dt.time(16, 0), 5)
    [datetime.time(15, 45), datetime.time(15, 50)]
    >>> retry_moments(Cadence(), dt.date(2022, 6, 1), dt.time(16, 0), 10)  # the window ends at 15:50
    [datetime.time(15, 45)]
    """
    if cadence.intraday:
        return []
    at = dt.datetime.combine(day, cadence.decision_moment(day, close))
    end = dt.datetime.combine(day, close) - dt.timedelta(minutes=before_close_minutes)
    return [m.time() for m in (at, at + dt.timedelta(minutes=RETRY_AFTER_MINUTES)) if m < end or m == at]


def decision_missed(now: dt.datetime, session: Session | None, cadence: Cadence, decided: dict | None,
                    after_open_minutes: int = 15, before_close_minutes: int = 5) -> bool:
    """Whether a cycle at ``now`` finds a decision it was the last scheduled chance for still unmade (``decided``:
    the daybook's mark of its date or slot). Daily: at or after the retry (or the window's end); intraday: every
    slot is its own last chance. A cycle before the decision time, or on a day without a session, misses nothing.

    >>> from brokers.calendar import MarketCalendar
    >>> session = MarketCalendar().session(dt.date(2022, 6, 1))
    >>> [decision_missed(dt.datetime(2022, 6, 1, h, m, tzinfo=NEW_YORK), session, Cadence(), None)
    ...  for h, m in ((15, 45), (15, 50), (16, 30))]
    [False, True, True]
    >>> decision_missed(dt.datetime(2022, 6, 1, 15, 50, tzinfo=NEW_YORK), session, Cadence(), {"cycle_id": "c1"})
    False
    """
    if session is None or decided is not None:
        return False
    local = new_york(now)
    if cadence.intraday:
        return current_slot(now, session, cadence, after_open_minutes, before_close_minutes) is not None
    close = session.close.astimezone(NEW_YORK).time()
    last = retry_moments(cadence, session.date, close, before_close_minutes) or [cadence.decision_moment(session.date, close)]
    _, end = window(session, after_open_minutes, before_close_minutes)
    return (local + _TOLERANCE).time() >= last[-1] or local >= end


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
