"""The deploy schedule, derived from the strategy's cadence: never typed twice.

Daily cadence: the decision time on weekdays, plus the early-close decision moment (15 minutes before a 13:00
close), both in New York time. On a normal day the early cycle finds it is before the decision time and only
reports; on an early-close day it makes the day's decision, as the backtest decides on every trading day.

Example:
    >>> from strategies.cadence import Cadence
    >>> schedules_for(Cadence())
    ('cron(45 12 ? * MON-FRI *)', 'cron(45 15 ? * MON-FRI *)')
    >>> schedules_for(Cadence.parse("daily", "11:00"))
    ('cron(0 11 ? * MON-FRI *)',)
"""

from __future__ import annotations

import datetime as dt

from strategies.cadence import Cadence

EARLY_CLOSE = dt.time(13, 0)  # NYSE's early closes (July 3rd, Black Friday, Christmas Eve)


def schedules_for(cadence: Cadence) -> tuple[str, ...]:
    """EventBridge Scheduler cron expressions (New York time) for ``cadence``."""
    moments = {cadence.decision_time, cadence.decision_moment(dt.date(2000, 1, 3), EARLY_CLOSE)}
    return tuple(f"cron({t.minute} {t.hour} ? * MON-FRI *)" for t in sorted(moments))
