"""AWS Lambda entry point: one invocation is one trading cycle (``live.cycle.run``).

A failed cycle (status ``error``, or ``unrecorded``: it ran but its ledger or journal write failed) is journaled
first and then raised as :class:`CycleFailed`, so Lambda counts it in its ``Errors`` metric and an asynchronous
invocation's failure destination / dead-letter queue receives it. Lambda retries a failed asynchronous
invocation (twice by default); that is safe: order ids are deterministic per decision, the lease serialises
cycles, and the ledger keeps a retry from buying twice. ``busy`` (another cycle held the lease) is not a failure.

Locally: ``python lambda_function.py --now 2022-06-01T15:45:00-04:00`` replays that moment on the paper broker
with the bundled sample and prints the summary (``--help`` for more).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from live.cycle import run
from live.metrics import FAILED

__all__ = ["CycleFailed", "lambda_handler", "run"]

LEASE_MARGIN_SECONDS = 30


class CycleFailed(RuntimeError):
    """A cycle ended in ``error`` or ``unrecorded``; ``summary`` is what ``run()`` returned (and journaled)."""

    def __init__(self, summary: dict[str, Any]) -> None:
        error = summary.get("error") or {}
        why = error.get("message") or summary.get("journal_error") or summary.get("ledger_error") or summary.get("daybook_error") or "failed"
        kind = error.get("type") or summary.get("outcome")
        super().__init__(f"cycle {summary.get('cycle_id')} {summary.get('status')} ({kind}): {why}")
        self.summary = summary


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: ``event`` may carry ``now`` (a replayed moment) and ``dry_run``.

    Returns the summary; raises :class:`CycleFailed` after journaling when the cycle failed."""
    env = dict(os.environ)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        # the lease lasts at least as long as this invocation may (LEASE_SECONDS can lengthen it, never shorten
        # it: a lease that expired under a live cycle would let the next one buy the book again), and outlives it
        # by a margin only: Lambda kills the cycle at its timeout
        env["LEASE_MIN_SECONDS"] = f"{remaining() / 1000 + LEASE_MARGIN_SECONDS:.0f}"
    # decide() must return before the invocation ends (live.time_budget): Lambda kills it at its timeout
    deadline = time.monotonic() + remaining() / 1000 if callable(remaining) else None
    summary = run(event, env=env, deadline=deadline)
    if summary.get("status") in FAILED:
        raise CycleFailed(summary)
    return summary


if __name__ == "__main__":
    from live.cli import main

    sys.exit(main(sys.argv[1:]))
