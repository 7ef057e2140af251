"""``python -m deploy pause`` / ``resume``: disable or enable the EventBridge Scheduler schedules, nothing else.

The function, its journal, ledger and lease, its secret and its alarms stay as they are: a paused bot runs no
cycle (so it sends no order), and ``resume`` picks up at the next scheduled slot. ``deploy status`` shows it
as paused; ``deploy up`` keeps a paused bot paused.

Example:
    >>> print(Step("schedule", "paused", "prophettrend-0"))
    schedule    paused    prophettrend-0
"""

from __future__ import annotations

from clitools import UserError
from deploy.aws import Aws, error_code
from deploy.config import DeployConfig
from deploy.up import Step, _paged

# The fields UpdateSchedule takes: it replaces the whole schedule, so everything GetSchedule returned goes back.
_UPDATABLE = ("ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow", "Target", "Description",
              "StartDate", "EndDate", "KmsKeyArn", "ActionAfterCompletion")


def set_paused(cfg: DeployConfig, paused: bool, aws: Aws | None = None) -> list[Step]:
    """Set every schedule of the function's group to DISABLED (``paused``) or ENABLED; returns the steps."""
    aws = aws or Aws(cfg)
    sched = aws.client("scheduler")
    try:
        listed = _paged(sched, "list_schedules", "Schedules", GroupName=cfg.schedule_group)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        listed = []
    if not listed:
        raise UserError(f"no schedules of {cfg.function_name} to {'pause' if paused else 'resume'} "
                        f"(group {cfg.schedule_group}): deploy it with `python -m deploy up`")
    wanted = "DISABLED" if paused else "ENABLED"
    steps = []
    for item in sorted(listed, key=lambda i: i["Name"]):
        current = sched.get_schedule(Name=item["Name"], GroupName=cfg.schedule_group)
        if current.get("State") == wanted:
            steps.append(Step("schedule", "unchanged", f"{item['Name']}: already {wanted.lower()}"))
            continue
        spec = {k: current[k] for k in _UPDATABLE if current.get(k) is not None}
        sched.update_schedule(Name=item["Name"], GroupName=cfg.schedule_group, State=wanted, **spec)
        steps.append(Step("schedule", "paused" if paused else "resumed", f"{item['Name']}: {wanted.lower()}"))
    return steps


def is_paused(schedules: list[dict]) -> bool:
    """True when there are schedules and none is enabled.

    >>> is_paused([{"State": "DISABLED"}]), is_paused([{"State": "ENABLED"}, {"State": "DISABLED"}]), is_paused([])
    (True, False, False)
    """
    return bool(schedules) and all(s.get("State") == "DISABLED" for s in schedules)
