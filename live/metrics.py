"""Every cycle's outcome as CloudWatch metrics: one Embedded Metric Format (EMF) line in the cycle's log.

CloudWatch Logs turns the line into metrics in namespace ``ProphetTrend`` with dimension ``Function``
(``AWS_LAMBDA_FUNCTION_NAME``, or ``local``), no agent or API call needed:

* ``Cycles`` = 1 for every cycle;
* ``CycleErrors`` = 1 when the cycle failed: ``status`` ``error`` (configuration, input, broker, data, lease,
  a bug) or ``unrecorded`` (its ledger or journal write failed, whatever it traded), or ``refused`` (the broker
  refused every order it planned: the bot could not trade). The alarm watches this one.
* ``CyclesBusy`` = 1 when the cycle found another cycle of its strategy holding the lease and stood aside. That
  is the lease doing its job (a doubled or overlapping invocation), so it is not an error; a run of them means a
  stuck cycle and can be alarmed on separately.
* ``OrdersSent`` = the orders this cycle sent (``fate: sent``); ``OrdersRefused`` = those the broker refused.
* ``DecisionsMissed`` = 1 when the cycle was the last scheduled chance of a decision (the daily retry, or an
  intraday slot) and that decision is still unmade when it ends, whatever the cause: busy (a stale or running
  lease), an error, an unrecorded mark (summary ``decision_missed``; ``live.schedule.decision_missed``). The
  deploy's missed-decision alarm watches it: a day must never be skipped without a word.

Example:
    >>> line = emf_line({"status": "traded", "orders": [{"fate": "sent"}, {"fate": "existing"}],
    ...                  "strategy": "pt", "cycle_id": "c1"}, function="local", timestamp_ms=0)
    >>> line["Cycles"], line["CycleErrors"], line["OrdersSent"], line["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    (1, 0, 1, 'ProphetTrend')
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

NAMESPACE = "ProphetTrend"
FAILED = frozenset({"error", "unrecorded"})  # the handler raises for these (Lambda's Errors, the failure queue)
ALARMED = FAILED | {"refused"}  # CycleErrors: every order refused is not a crash, but the bot could not trade
METRICS = ("Cycles", "CycleErrors", "CyclesBusy", "OrdersSent", "OrdersRefused", "DecisionsMissed")


def emf_line(summary: dict[str, Any], *, function: str, timestamp_ms: int | None = None) -> dict[str, Any]:
    """The EMF object for one cycle's summary."""
    status = summary.get("status")
    return {
        "_aws": {"Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
                 "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"]],
                                        "Metrics": [{"Name": m, "Unit": "Count"} for m in METRICS]}]},
        "Function": function,
        "Cycles": 1,
        "CycleErrors": int(status in ALARMED),
        "CyclesBusy": int(status == "busy"),
        "OrdersSent": sum(1 for o in summary.get("orders") or () if o.get("fate") == "sent"),
        "OrdersRefused": sum(1 for o in summary.get("orders") or () if o.get("fate") == "refused"),
        "DecisionsMissed": int(bool(summary.get("decision_missed"))),
        "event": "cycle_metrics", "status": status, "strategy": summary.get("strategy"),
        "cycle_id": summary.get("cycle_id"),
    }


def emit(summary: dict[str, Any], *, function: str, stream: TextIO | None = None) -> None:
    """Write the EMF line (the log stream: stderr, which Lambda sends to CloudWatch Logs)."""
    out = stream or sys.stderr
    out.write(json.dumps(emf_line(summary, function=function), default=str) + "\n")
    out.flush()
