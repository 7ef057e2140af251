"""What one cycle saw and did, gathered as it runs; it becomes the returned summary and the journal record.

Example:
    >>> import datetime as dt
    >>> record = CycleRecord(now=dt.datetime(2022, 7, 4, 15, 45, tzinfo=dt.timezone.utc))
    >>> summary = record.finish("market_closed", reason="holiday")
    >>> summary["status"], summary["orders"], summary["reason"]
    ('market_closed', [], 'holiday')
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

# busy: another cycle of this strategy held the lease, nothing traded; unrecorded: the cycle ran (``outcome`` says
# how) but its ledger or journal write failed (``ledger_error`` / ``journal_error``), so it counts as failed.
STATUSES = ("traded", "no_change", "refused", "market_closed", "dry_run", "busy", "error", "unrecorded")


def _plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses to dicts, dates to ISO strings, sets to sorted lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


@dataclass
class CycleRecord:
    now: dt.datetime
    cycle_id: str = ""
    strategy: str | None = None
    broker: str | None = None
    dry_run: bool = False
    dry_run_reason: str | None = None
    replayed: bool = False
    trading_date: dt.date | None = None
    slot: int | None = None
    orders: list[dict] = field(default_factory=list)
    signals: dict[str, dict] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)  # whether the cadence made a decision, and why not
    provenance: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # journal only: config, account, positions, ...
    plan: list[dict] = field(default_factory=list)  # every planned order and its fate (live.orders.plan_records)
    ledger_view: dict[str, Any] | None = None  # the strategy's positions against the broker's (live.ledger)
    ledger: Any = None  # the live.ledger.Ledger, saved when the cycle ends
    lease: str | None = None  # where the lease was held
    function: str = "local"  # AWS_LAMBDA_FUNCTION_NAME: the metric's dimension
    notify_topic: str | None = None  # NOTIFY_TOPIC_ARN
    started: float = field(default_factory=time.perf_counter)
    config: Any = None  # the LiveConfig, once read: how the end of the cycle judges a missed decision
    decision_missed: bool = False  # the last chance of a decision passed without it (live.schedule.decision_missed)
    daybook_error: str | None = None  # the day's mark failed after the orders were sent: the cycle is unrecorded

    def __post_init__(self) -> None:
        if not self.cycle_id:
            self.cycle_id = f"{self.now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"

    def finish(self, status: str, *, reason: str | None = None, error: dict | None = None) -> dict[str, Any]:
        """The summary ``run()`` returns (JSON-serialisable)."""
        assert status in STATUSES, status
        return _plain({
            "status": status,
            "now": self.now,
            "trading_date": self.trading_date,
            "slot": self.slot,
            "strategy": self.strategy,
            "broker": self.broker,
            "dry_run": self.dry_run,
            "dry_run_reason": self.dry_run_reason,
            "replayed": self.replayed,
            "reason": reason,
            "orders": self.orders,
            "signals": self.signals,
            "skipped": self.skipped,
            "decision": self.decision,
            "plan": self.plan,
            "ledger": self.ledger_view,
            "lease": self.lease,
            "provenance": self.provenance,
            "error": error,
            "decision_missed": self.decision_missed,
            "cycle_id": self.cycle_id,
            "seconds": round(time.perf_counter() - self.started, 2),
        })

    def journal_entry(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The summary plus the inputs behind it."""
        return {**summary, "inputs": _plain(self.inputs)}
