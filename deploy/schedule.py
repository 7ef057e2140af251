"""The deploy schedule, derived from the strategy's cadence: never typed twice.

Daily cadence: the decision time on weekdays, plus the early-close decision moment (15 minutes before a 13:00
close), both in New York time, each with its retry ``live.schedule.RETRY_AFTER_MINUTES`` later (15:45 and 15:50),
so a decision that failed half-way completes the same day (the retry sends only what is missing, and finds a
completed decision already marked). On a normal day the early cycles find it is before the decision time and only
report; on an early-close day they make the day's decision, as the backtest decides on every trading day.

Intraday cadence (``15min``): exactly the slots of a normal session's trading window (09:45 to 15:45 with the
live defaults ``TRADE_AFTER_OPEN_MINUTES=15``, ``TRADE_BEFORE_CLOSE_MINUTES=5``), hours that share the same
minutes folded into one expression. An early close's slots are a subset of them (the same anchor after the
open); the invocations after its window report the market closed; holidays likewise.

Example:
    >>> from strategies.cadence import Cadence
    >>> schedules_for(Cadence())
    ('cron(45,50 12 ? * MON-FRI *)', 'cron(45,50 15 ? * MON-FRI *)')
    >>> schedules_for(Cadence.parse("daily", "11:00"))
    ('cron(0,5 11 ? * MON-FRI *)',)
    >>> schedules_for(Cadence.parse("daily", "10:58"))
    ('cron(58 10 ? * MON-FRI *)', 'cron(3 11 ? * MON-FRI *)')
    >>> schedules_for(Cadence.parse("15min"))
    ('cron(45 9 ? * MON-FRI *)', 'cron(0,15,30,45 10-15 ? * MON-FRI *)')
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Mapping

from live.schedule import retry_moments
from strategies.cadence import AFTER_OPEN_MINUTES, BEFORE_CLOSE_MINUTES, Cadence

# What every schedule sends the function: live.event accepts exactly its keys (``source`` is informational).
SCHEDULE_INPUT = json.dumps({"source": "schedule"})
EARLY_CLOSE = dt.time(13, 0)  # NYSE's early closes (July 3rd, Black Friday, Christmas Eve)
_DAY = dt.date(2000, 1, 3)


def schedules_for(cadence: Cadence, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """EventBridge Scheduler cron expressions (New York time) for ``cadence``; ``env`` may set the function's
    ``TRADE_AFTER_OPEN_MINUTES`` / ``TRADE_BEFORE_CLOSE_MINUTES``, which move an intraday cadence's slots (and may
    drop a daily retry that would fall after the window)."""
    env = env or {}
    after = int(env.get("TRADE_AFTER_OPEN_MINUTES") or AFTER_OPEN_MINUTES)
    before = int(env.get("TRADE_BEFORE_CLOSE_MINUTES") or BEFORE_CLOSE_MINUTES)
    if not cadence.intraday:
        moments = sorted({t for close in (dt.time(16, 0), EARLY_CLOSE)
                          for t in retry_moments(cadence, _DAY, close, before)})
    else:
        moments = [s.time() for s in cadence.slots(dt.datetime.combine(_DAY, dt.time(9, 30)),
                                                   dt.datetime.combine(_DAY, dt.time(16, 0)), after, before)]
    minutes_by_hour: dict[int, list[int]] = {}
    for moment in moments:
        minutes_by_hour.setdefault(moment.hour, []).append(moment.minute)
    groups: list[tuple[list[int], list[int]]] = []  # (hours, minutes): consecutive hours with the same minutes
    for hour, minutes in sorted(minutes_by_hour.items()):
        if groups and groups[-1][1] == minutes and groups[-1][0][-1] == hour - 1:
            groups[-1][0].append(hour)
        else:
            groups.append(([hour], minutes))
    return tuple(f"cron({','.join(map(str, minutes))} {_hours(hours)} ? * MON-FRI *)" for hours, minutes in groups)


def _hours(hours: list[int]) -> str:
    return str(hours[0]) if len(hours) == 1 else f"{hours[0]}-{hours[-1]}"
