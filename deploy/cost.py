"""``python -m deploy cost``: what the deployed bot costs a month, from its cadence, the measured cycle and the
published us-east-1 list prices. docs/cost.md is this command's output (tests/test_deploy_cost.py checks it).

Usage per cycle was measured, not guessed (docs/cost.md says how): the AWS calls of one paper cycle with an S3
journal counted on moto (5 S3 PUTs, 2 GETs, 1 DELETE), its log output (2.7 KB daily, 1.5 KB at 15 minutes), its
journal record (8 KB / 4 KB). Duration is billed from the cold start on, since every scheduled cycle may start
a fresh container (and Lambda bills the INIT phase since August 2025).

Example:
    >>> usage = monthly_usage(Usage(invocations_per_day=2, seconds=6.0, memory_mb=512))
    >>> usage["lambda_gb_s"], usage["requests"], usage["s3_put"]
    (132.0, 44, 220)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from deploy.config import DeployConfig
from live.metrics import METRICS as CYCLE_METRICS

PRICES_AS_OF = "2026-12-07"  # list prices, us-east-1 (see docs/cost.md for the pages)
PRICES = {  # USD
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1_000_000,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "s3_gb_month": 0.023,
    "scheduler_invocation": 1.00 / 1_000_000,
    "logs_ingest_gb": 0.50,
    "metric_month": 0.30,
    "alarm_month": 0.10,
    "sns_email": 2.00 / 100_000,
    "secret_month": 0.40,
    "secret_call": 0.05 / 10_000,
}
ALWAYS_FREE = {  # the monthly allowances that do not expire (new or old accounts)
    "lambda_gb_s": 400_000, "requests": 1_000_000, "scheduler": 14_000_000, "metrics": 10, "alarms": 10,
    "logs_gb": 5.0, "sns_email": 1000,
}
TRADING_DAYS_PER_MONTH = 22  # weekdays the schedules fire (holidays fire too, and only report the market closed)
# The cycle's metric line names them (Embedded Metric Format, one Function dimension): counted, never typed twice
METRICS = len(CYCLE_METRICS)
ALARMS = len(DeployConfig(function_name="cost").alarm_names)  # the alarms `up` creates


@dataclass(frozen=True)
class Usage:
    """One deployment's drivers: how often it runs, how long and how big, what each cycle writes."""

    invocations_per_day: int
    seconds: float  # billed duration of one invocation (cold start included)
    memory_mb: int = 512
    arch: str = "x86_64"
    s3_put: int = 5
    s3_get: int = 2
    log_kb: float = 3.0  # the cycle's lines plus Lambda's START/END/REPORT
    journal_kb: float = 8.0
    emails_per_day: float = 0.0  # alarm and fill notifications
    secret_backend: str = "secretsmanager"


def monthly_usage(u: Usage) -> dict[str, float]:
    """The month's quantities for ``u``."""
    n = u.invocations_per_day * TRADING_DAYS_PER_MONTH
    return {"requests": n, "lambda_gb_s": round(n * u.seconds * u.memory_mb / 1024, 1), "s3_put": n * u.s3_put,
            "s3_get": n * u.s3_get, "journal_gb": n * u.journal_kb / 1048576, "logs_gb": n * u.log_kb / 1048576,
            "emails": u.emails_per_day * TRADING_DAYS_PER_MONTH}


def cost_rows(u: Usage) -> list[tuple[str, str, float, float]]:
    """(item, monthly quantity, list cost, cost after the always-free allowances) per service."""
    m = monthly_usage(u)
    p = PRICES
    gb_s = m["lambda_gb_s"]
    secrets = u.secret_backend == "secretsmanager"
    rows = [
        ("Lambda compute", f"{gb_s:,.0f} GB-s", gb_s * p[f"lambda_gb_s_{u.arch}"],
         max(0.0, gb_s - ALWAYS_FREE["lambda_gb_s"]) * p[f"lambda_gb_s_{u.arch}"]),
        ("Lambda requests", f"{m['requests']:,} requests", m["requests"] * p["lambda_request"],
         max(0, m["requests"] - ALWAYS_FREE["requests"]) * p["lambda_request"]),
        ("S3 requests", f"{m['s3_put']:,} PUT, {m['s3_get']:,} GET",
         m["s3_put"] * p["s3_put"] + m["s3_get"] * p["s3_get"],
         m["s3_put"] * p["s3_put"] + m["s3_get"] * p["s3_get"]),
        ("S3 storage (journal, a year's growth)", f"{m['journal_gb'] * 12 * 1024:,.1f} MB",
         m["journal_gb"] * 12 * p["s3_gb_month"], m["journal_gb"] * 12 * p["s3_gb_month"]),
        ("EventBridge Scheduler", f"{m['requests']:,} invocations", m["requests"] * p["scheduler_invocation"],
         max(0, m["requests"] - ALWAYS_FREE["scheduler"]) * p["scheduler_invocation"]),
        ("CloudWatch Logs", f"{m['logs_gb'] * 1024:,.1f} MB ingested", m["logs_gb"] * p["logs_ingest_gb"],
         max(0.0, m["logs_gb"] - ALWAYS_FREE["logs_gb"]) * p["logs_ingest_gb"]),
        ("CloudWatch metrics", f"{METRICS} custom metrics", METRICS * p["metric_month"],
         max(0, METRICS - ALWAYS_FREE["metrics"]) * p["metric_month"]),
        ("CloudWatch alarms", f"{ALARMS} standard alarms", ALARMS * p["alarm_month"],
         max(0, ALARMS - ALWAYS_FREE["alarms"]) * p["alarm_month"]),
        ("SNS email", f"{m['emails']:,.0f} emails", m["emails"] * p["sns_email"],
         max(0.0, m["emails"] - ALWAYS_FREE["sns_email"]) * p["sns_email"]),
        ("Secrets Manager" if secrets else "SSM Parameter Store (standard)",
         f"1 secret, {m['requests']:,} reads" if secrets else "1 SecureString parameter",
         (p["secret_month"] + m["requests"] * p["secret_call"]) if secrets else 0.0,
         (p["secret_month"] + m["requests"] * p["secret_call"]) if secrets else 0.0),
    ]
    return rows


def render(title: str, u: Usage) -> str:
    """A Markdown table of ``cost_rows`` with the totals."""
    rows = cost_rows(u)
    lines = [f"{title}: {u.invocations_per_day} invocations a day x {TRADING_DAYS_PER_MONTH} days, {u.seconds:g} s "
             f"at {u.memory_mb} MB {u.arch} each", "",
             "| item | a month | list price | after the always-free allowances |", "| --- | --- | ---: | ---: |"]
    for item, quantity, full, billed in rows:
        lines.append(f"| {item} | {quantity} | ${full:,.4f} | ${billed:,.4f} |")
    lines.append(f"| **total** | | **${sum(r[2] for r in rows):,.2f}** | **${sum(r[3] for r in rows):,.2f}** |")
    return "\n".join(lines)


def firings_per_day(expressions: tuple[str, ...]) -> int:
    """How many times a weekday the schedule's cron expressions fire.

    >>> firings_per_day(("cron(45 9 ? * MON-FRI *)", "cron(0,15,30,45 10-15 ? * MON-FRI *)"))
    25
    """
    total = 0
    for expression in expressions:
        minutes, hours = expression[len("cron("):].split()[:2]
        first, _, last = hours.partition("-")
        total += len(minutes.split(",")) * (int(last or first) - int(first) + 1)
    return total


def _deployed(cadence: str) -> int:
    """The invocations a day of what `up` schedules for ``cadence`` (deploy.schedule, never typed twice)."""
    from deploy.schedule import schedules_for
    from strategies.cadence import Cadence

    return firings_per_day(schedules_for(Cadence.parse(cadence)))


# The measured cycles (docs/cost.md, "Measured"): the schedule's invocations a day, and the billed seconds of a
# cold start without --compile (5.9 s, docs/deploy.md), the worst case for every invocation.
CADENCES = {
    "daily": Usage(invocations_per_day=_deployed("daily"), seconds=5.9, log_kb=3.0, journal_kb=8.0,
                   emails_per_day=1.0),
    "15min": Usage(invocations_per_day=_deployed("15min"), seconds=5.9, log_kb=2.0, journal_kb=4.0,
                   emails_per_day=2.0),
}


def report(cadences: list[str] | None = None, memory_mb: int = 512, seconds: float | None = None,
           arch: str = "x86_64", secret_backend: str = "secretsmanager") -> str:
    """The tables for the cadences (default: both), as docs/cost.md shows them."""
    from dataclasses import replace

    out = []
    for name in cadences or list(CADENCES):
        u = replace(CADENCES[name], memory_mb=memory_mb, arch=arch, secret_backend=secret_backend,
                    **({"seconds": seconds} if seconds is not None else {}))
        out.append(render(f"{name} cadence", u))
    out.append(f"(us-east-1 list prices as of {PRICES_AS_OF}; python -m deploy cost)")
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from clitools import DefaultsHelpFormatter, OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m deploy.cost", formatter_class=DefaultsHelpFormatter,
                                description="What the deployed bot costs a month at each cadence (see docs/cost.md).")
    parser.add_argument("--cadence", choices=sorted(CADENCES), action="append", help="repeatable; default both")
    parser.add_argument("--memory", type=int, default=512, help="the function's MB")
    parser.add_argument("--seconds", type=float, default=None, help="billed seconds per invocation (default 5.9)")
    parser.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64")
    parser.add_argument("--secret-backend", choices=["secretsmanager", "ssm"], default="secretsmanager")
    args = parser.parse_args(argv)
    print(report(args.cadence, args.memory, args.seconds, args.arch, args.secret_backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
