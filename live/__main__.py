"""``python -m live report --journal PATH|s3://bucket/prefix [--since DATE] [--out DIR]``: what the bot did.

``python -m live ledger new --journal PATH|s3://bucket/prefix --strategy NAME``: start a new, empty ledger for a
strategy (the old one is kept, renamed with the time); the next cycle binds it to the account it trades. Needed
once when a journal home moves to another broker account (paper first, then live), which a cycle refuses.

Writes ``live_report.html`` (one self-contained file) and ``live_summary.txt`` to ``--out`` and prints the summary.
Exit codes: 0 the report was written (unreadable records, if any, are named in it); 2 bad input: no journal, an
empty or foreign one, no cycles under the S3 prefix, ``--since`` after the last cycle (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from clitools import DefaultsHelpFormatter, OneLineErrorParser, UserError, guarded


REPORT_DESCRIPTION = ("What the deployed or local bot did: its cycles, orders, fills, positions and equity from the "
                      "journal (a JSON-lines file or an S3 prefix), and the drift against a backtest re-run on the "
                      "same days. Writes live_report.html and live_summary.txt to --out and prints the summary. "
                      "Exit codes: 0 written; 2 bad input (one error line).")
DEFAULT_OUT = Path("runs") / "live_report"  # runs/ is git-ignored, like the backtests' folders


def _date(text: str) -> dt.date:
    """A date, or ``today`` / ``yesterday`` (UTC, the journal's clock).

    >>> _date("2022-06-01"), _date("today") == dt.datetime.now(dt.timezone.utc).date()
    (datetime.date(2022, 6, 1), True)
    """
    today = dt.datetime.now(dt.timezone.utc).date()
    words = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text.strip().lower() in words:
        return words[text.strip().lower()]
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD, today or yesterday)") from None


def add_report_flags(p: argparse.ArgumentParser, journal_required: bool = True) -> None:
    if journal_required:
        p.add_argument("--journal", required=True, metavar="PATH|s3://bucket/prefix",
                       help="the cycles' journal: a JSON-lines file or an S3 prefix")
    p.add_argument("--since", type=_date, default=None, metavar="DATE", help="only cycles on or after this date (YYYY-MM-DD, today, yesterday)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for live_report.html")
    p.add_argument("--no-drift", action="store_true", help="skip the backtest re-run (drift)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m live", description="The live bot's tools: report.",
                                formatter_class=DefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("report", help="HTML report and text summary of the journal", description=REPORT_DESCRIPTION,
                       formatter_class=DefaultsHelpFormatter)
    add_report_flags(r)
    led = sub.add_parser("ledger", help="the strategy's ledger", formatter_class=DefaultsHelpFormatter,
                         description="The strategy's ledger: the orders and fills it owns, bound to one broker "
                                     "account (docs/live.md).")
    led_sub = led.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    new = led_sub.add_parser("new", help="start a new ledger (the old one is kept aside)",
                             formatter_class=DefaultsHelpFormatter,
                             description="Start a new, empty ledger for a strategy, for example before its first "
                                         "cycle on another account (paper, then live). The old ledger is kept as "
                                         "ledger/<strategy>.<UTC time>.json; the next cycle binds the new one to "
                                         "the account it trades, and shares already there stay the user's.")
    new.add_argument("--journal", required=True, metavar="PATH|s3://bucket/prefix", help="the cycles' JOURNAL")
    new.add_argument("--strategy", required=True, help="the strategy's name (its STRATEGY_NAME)")
    return parser


def ledger_new(journal: str, strategy: str) -> int:
    from live.ledger import LedgerError, new_ledger

    try:
        aside = new_ledger(journal, strategy)
    except (LedgerError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(f"new ledger for {strategy}: the next cycle binds it to the account it trades"
          + (f"; the old one is kept at {aside}" if aside else " (there was none)"))
    return 0


def report(journal: str, since: dt.date | None, out: Path, drift: bool = True, s3_client=None) -> int:
    """Read, build, write, print; a :class:`~live.journal_read.JournalError` becomes a one-line ``UserError``."""
    from live.journal_read import JournalError, read_journal
    from live.report import build_report, summary_text, write_report

    try:
        read = read_journal(journal, since=since, s3_client=s3_client)
    except JournalError as exc:
        raise UserError(str(exc)) from None
    built = build_report(read, drift=drift)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    page, _ = write_report(built, out)
    print(summary_text(built))
    print(f"report      {page}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ledger":
        return ledger_new(args.journal, args.strategy)
    return report(args.journal, args.since, args.out, drift=not args.no_drift)


def run(argv: list[str] | None = None) -> int:
    return guarded(main, OSError)(argv)


if __name__ == "__main__":
    sys.exit(run())
