"""docs/cost.md shows what ``python -m deploy cost`` computes, and the computation follows its inputs."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from deploy.cost import CADENCES, PRICES, cost_rows, report

ROOT = Path(__file__).resolve().parent.parent


def test_docs_cost_md_is_the_commands_output():
    out = subprocess.run([sys.executable, "-m", "deploy", "cost"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == report().strip()
    assert report().strip() in (ROOT / "docs" / "cost.md").read_text()


def test_costs_follow_the_cadence_memory_and_secret_store():
    daily, intraday = (cost_rows(CADENCES[c]) for c in ("daily", "15min"))
    lam = lambda rows: next(r for r in rows if r[0] == "Lambda compute")  # noqa: E731
    # 25 invocations a day instead of 2, same seconds and memory: 12.5 times the GB-seconds
    ratio = CADENCES["15min"].invocations_per_day / CADENCES["daily"].invocations_per_day
    assert abs(lam(intraday)[2] / lam(daily)[2] - ratio) < 1e-9
    assert lam(intraday)[3] == 0.0  # inside the 400,000 free GB-seconds
    twice = cost_rows(replace(CADENCES["daily"], memory_mb=1024))
    assert abs(lam(twice)[2] - 2 * lam(daily)[2]) < 1e-12
    s3 = next(r for r in daily if r[0] == "S3 requests")
    n = CADENCES["daily"].invocations_per_day * 22
    assert abs(s3[2] - (n * 5 * PRICES["s3_put"] + n * 2 * PRICES["s3_get"])) < 1e-12
    # the invocations are what `up` schedules for the cadence
    from deploy.schedule import schedules_for
    from strategies.cadence import Cadence

    assert CADENCES["15min"].invocations_per_day == 25 == len(Cadence.parse("15min").slots(
        dt.datetime(2024, 6, 3, 9, 30), dt.datetime(2024, 6, 3, 16, 0), 15, 5))
    # each daily schedule fires at its decision minute and at the same-day retry (cron "45,50 15 ...")
    assert CADENCES["daily"].invocations_per_day == sum(len(e[len("cron("):].split()[0].split(","))
                                                        for e in schedules_for(Cadence())) == 4
    ssm = cost_rows(replace(CADENCES["daily"], secret_backend="ssm"))
    assert sum(r[3] for r in daily) - sum(r[3] for r in ssm) >= PRICES["secret_month"]
