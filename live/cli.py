"""``python lambda_function.py [--now ISO8601] [--dry-run]``: one cycle locally, the summary printed as JSON.

Exit codes: 0 when the cycle ran (traded, no_change, market_closed, dry_run, or busy: another cycle of the strategy
held the lease); 2 with one ``error: ...`` line for bad configuration or input; 1 when the broker, the data, the
lease, the ledger, the daybook or the strategy's code failed mid-cycle; 3 when the cycle ran (it may have traded)
but its ledger, journal or daybook write failed (status ``unrecorded``). The summary is printed for 1 and 3.
"""

from __future__ import annotations

import argparse
import json
import sys

from clitools import EXIT_BAD_INPUT, OneLineErrorParser

EXIT_CYCLE_FAILED = 1
EXIT_UNRECORDED = 3


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="python lambda_function.py",
        description="Run one live trading cycle of ProphetTrend and print its summary as JSON. Settings come from "
        "environment variables (see docs/live.md); without Alpaca keys the local SQLite paper broker trades on the "
        "bundled sample. Structured log lines go to stderr.",
        epilog="Exit codes: 0 the cycle ran (traded, no_change, market_closed, dry_run, busy); 1 the broker, the data, "
        "the lease or the ledger failed mid-cycle (summary printed); 2 bad configuration or input (one error line); "
        "3 the cycle ran but its ledger, journal or daybook write failed (summary printed).",
    )
    p.add_argument("--now", default=None, metavar="ISO8601",
                   help="replay this moment (ISO 8601, e.g. 2022-06-01T15:45:00-04:00; no offset means New York "
                        "time); honoured only with the paper broker or --dry-run")
    p.add_argument("--dry-run", action="store_true", help="decide and report, submit nothing")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr (errors still reported)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import io
    import logging
    import os

    from live import logs
    from live.cycle import run

    event = {"dry_run": args.dry_run}
    if args.now is not None:
        event["now"] = args.now
    if args.quiet:
        logging.getLogger(logs.LOGGER_NAME).disabled = True
    # Log lines are held back until the cycle ends, so bad input stays a single `error:` line on stderr.
    buffer = logs.default_stream = io.StringIO()
    try:
        summary = run(event)
    except KeyboardInterrupt:
        sys.stderr.write(buffer.getvalue() + "interrupted\n")
        return 130
    finally:
        logs.default_stream = None
    error = summary.get("error") or {}
    if error.get("type") in ("config", "input"):
        sys.stderr.write(f"error: {error['message']}\n")
        return EXIT_BAD_INPUT
    sys.stderr.write(buffer.getvalue())
    try:
        print(json.dumps(summary, indent=2))
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if summary["status"] == "error":
        sys.stderr.write(f"error: {error.get('message')}\n")
        return EXIT_CYCLE_FAILED
    if summary["status"] == "unrecorded":
        why = summary.get("ledger_error") or summary.get("journal_error") or summary.get("daybook_error")
        sys.stderr.write(f"error: the cycle ran ({summary.get('outcome')}) but was not recorded: {why}\n")
        return EXIT_UNRECORDED
    return 0
