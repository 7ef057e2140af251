"""Smaller items of issue 16 (item 11): configuration errors of the live command line exit 2 with one line (not 1
or 3), ``JOURNAL=s3://`` alone among them; ``deploy up --dry-run`` refuses a function name Lambda would refuse;
year-0001 dates in ``python -m marketdata`` are one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY", "BROKER"))}
    env.update(extra)
    return env


def one_error_line(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("setting, expected", [
    ({"JOURNAL": "s3://"}, "JOURNAL must be s3://bucket/prefix"),
    ({"JOURNAL": "s3:///prefix"}, "JOURNAL must be s3://bucket/prefix"),
    ({"JOURNAL": "{blocked}/journal.jsonl"}, "JOURNAL: cannot create the folder"),  # was 3: unrecorded
    ({"PAPER_DB": "{blocked}/paper.sqlite"}, "PAPER_DB: cannot open the paper broker database"),  # was 1
])
def test_live_configuration_errors_exit_2_with_one_line(tmp_path, setting, expected):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    env = clean_env(STATE_DIR=str(tmp_path / "state"), **{k: v.format(blocked=blocked) for k, v in setting.items()})
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", "2022-06-01T15:45:00-04:00"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    one_error_line(done, expected)
    assert done.stdout == ""


@pytest.mark.parametrize("name", ["bad name!", "a" * 60])
def test_deploy_refuses_a_function_name_lambda_would_refuse(name):
    done = subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--function-name", name], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    one_error_line(done, "--function-name must be 1 to 54 letters, digits, - or _")


@pytest.mark.parametrize("dates", [["--start", "0001-01-01", "--end", "0001-01-05"], ["--end", "0001-01-02"]])
def test_year_one_dates_in_marketdata_are_one_error_line(tmp_path, dates):
    done = subprocess.run([sys.executable, "-m", "marketdata", "fetch", "--symbols", "AAPL", *dates], cwd=ROOT,
                          env=clean_env(PROPHETTREND_CACHE=str(tmp_path), PROPHETTREND_OFFLINE="1"),
                          capture_output=True, text=True, timeout=120)
    one_error_line(done, "is outside 1900-01-01 to 2199-12-31")
