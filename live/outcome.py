"""How a cycle ends, in this order: the ledger is saved (never by a dry run), the fill notification sent, the journal written, the
metric line printed, the ``cycle_end`` line logged. A failed ledger or journal write never hides what the cycle
did: the status becomes ``unrecorded`` (``outcome`` keeps what it was, ``ledger_error``/``journal_error`` say
what failed; ``daybook_error`` when the day's mark failed after sending), which counts as a failed cycle for the metric, the Lambda handler and the command line's exit code.

A cycle that decided to trade but whose every order the broker refused ends ``refused``: nothing was traded,
yet it is not ``no_change`` (the book is not where the strategy wants it); the metric counts it in
``CycleErrors``, so the error alarm fires (``live.metrics``).

Example:
    >>> mark_unrecorded({"status": "traded"}, "journal_error", "journal write failed: disk full")
    {'status': 'unrecorded', 'outcome': 'traded', 'journal_error': 'journal write failed: disk full'}
    >>> trading_status([{"new": False, "fate": "refused"}, {"new": False, "fate": "refused"}], dry_run=False)
    'refused'
    >>> trading_status([{"new": True, "fate": "sent"}, {"new": False, "fate": "refused"}], dry_run=False)
    'traded'
    >>> trading_status([], dry_run=False), trading_status([{"new": False, "fate": "existing"}], dry_run=False)
    ('no_change', 'no_change')
"""

from __future__ import annotations

import logging
from typing import Any

from live import logs, metrics, notify
from live.logs import log, redact


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def trading_status(orders: list[dict[str, Any]], *, dry_run: bool) -> str:
    """The status of a cycle that decided: ``dry_run``, ``traded`` (something new was sent), ``refused`` (orders
    were planned and the broker refused every one of them), else ``no_change``."""
    if dry_run:
        return "dry_run"
    if any(o.get("new") for o in orders):
        return "traded"
    if orders and all(o.get("fate") == "refused" for o in orders):
        return "refused"
    return "no_change"


def mark_unrecorded(summary: dict[str, Any], field: str, message: str) -> dict[str, Any]:
    if summary["status"] != "unrecorded":
        summary["outcome"] = summary["status"]
        summary["status"] = "unrecorded"
    summary[field] = message
    return summary


def conclude(record, journal, logger, secrets, status: str, **extra: Any) -> dict[str, Any]:
    """The summary of a cycle ending with ``status``, after saving and reporting it everywhere."""
    summary = redact(record.finish(status, **extra), secrets)
    if record.daybook_error:  # orders went out but the day's mark did not: a later cycle may decide again
        mark_unrecorded(summary, "daybook_error", redact(record.daybook_error, secrets))
    ledger = record.ledger
    if ledger is not None and ledger.dirty and not record.dry_run:  # a dry run writes no ledger
        try:
            ledger.save()
        except Exception as exc:  # noqa: BLE001 - reported in the status, never raised past the journal
            message = redact(f"ledger write failed: {_line(exc)}", secrets)
            log(logger, "ledger_error", logging.ERROR, message=message)
            mark_unrecorded(summary, "ledger_error", message)
    if record.notify_topic:
        try:
            summary["notification"] = notify.publish(record.notify_topic, summary, ledger.new_fills if ledger else [])
        except Exception as exc:  # noqa: BLE001 - a notification is a courtesy: noted, not a failed cycle
            summary["notify_error"] = redact(f"notification failed: {_line(exc)}", secrets)
            log(logger, "notify_error", logging.WARNING, message=summary["notify_error"])
    if journal is not None:
        try:
            summary["journal"] = journal.write(record.journal_entry(summary))
            if getattr(journal, "last_repair", None):
                summary["journal_repair"] = journal.last_repair
                log(logger, "journal_repaired", logging.WARNING, **journal.last_repair)
        except Exception as exc:  # noqa: BLE001 - the journal failing must not hide what the cycle did
            message = redact(f"journal write failed: {_line(exc)}", secrets)
            log(logger, "journal_error", logging.ERROR, message=message)
            mark_unrecorded(summary, "journal_error", message)
    if not logging.getLogger(logs.LOGGER_NAME).disabled:
        metrics.emit(summary, function=record.function, stream=logs.default_stream)
    log(logger, "cycle_end", status=summary["status"], orders=len(summary["orders"]), seconds=summary["seconds"],
        error=summary["error"])
    return summary
