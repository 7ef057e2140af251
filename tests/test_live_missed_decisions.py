"""No silent skipped days (issue 16, item 10): a retry inside the decision window completes a half-finished
decision, a schedule a moment ahead of the broker's clock still decides, every cause of a missed decision is
measured (``DecisionsMissed``), an unreadable mark is an error and a mark failing after sending is unrecorded."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import live.cycle
from _live_env import live_env
from brokers.base import BrokerError
from brokers.calendar import NEW_YORK, MarketCalendar
from brokers.paper import PaperBroker
from live.cycle import run
from live.daybook import LocalDaybook
from live.lease import LeaseSettings, open_lease
from live.metrics import emf_line
from live.schedule import current_slot, decision_due
from marketdata.provider import SampleProvider
from strategies.cadence import Cadence

ROOT = Path(__file__).resolve().parents[1]
WIDE = {"UNIVERSE": "KO,PG,JNJ,PEP,MRK,LLY,UNH", "STRATEGY_TOP_N": "7"}  # four buys on 2022-06-01
DAY = "2022-06-01"
# Loaded ahead of the cycle in the first CLI process only: its broker fails at the second order.
FAIL_SECOND_SUBMIT = '''
from brokers.base import BrokerError
from brokers.paper import PaperBroker

_submit, _count = PaperBroker.submit, [0]

def submit(self, request):
    _count[0] += 1
    if _count[0] == 2:
        raise BrokerError("paper broker unreachable: connection reset")
    return _submit(self, request)

PaperBroker.submit = submit
'''


def orders(state_dir: Path):
    return PaperBroker(state_dir / "paper.sqlite", SampleProvider()).orders()


def cli(state_dir: Path, now: str, inject: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_", "BROKER"))}
    env.update(live_env(state_dir, **WIDE, LOG_LEVEL="INFO"))
    if inject is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(inject), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "lambda_function.py", "--now", now], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def metric(stderr: str) -> dict:
    (line,) = [json.loads(x) for x in stderr.splitlines() if '"cycle_metrics"' in x]
    return line


def test_the_1550_retry_completes_a_decision_that_failed_half_way_at_1545(tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FAIL_SECOND_SUBMIT)
    state = tmp_path / "state"
    first = cli(state, f"{DAY}T15:45:00-04:00", inject)
    assert first.returncode == 1, first.stderr
    failed = json.loads(first.stdout)
    assert failed["error"]["type"] == "broker" and [o["fate"] for o in failed["orders"]][:2] == ["sent", "error"]
    assert metric(first.stderr)["DecisionsMissed"] == 0  # the retry is still to come
    planned = {o["symbol"] for o in failed["orders"]}
    assert len(planned) == 4 and len(orders(state)) == 1

    retry = cli(state, f"{DAY}T15:50:00-04:00")
    assert retry.returncode == 0, retry.stderr
    done = json.loads(retry.stdout)
    assert done["status"] == "traded"
    sent = {o["symbol"] for o in done["orders"] if o["fate"] == "sent"}
    assert sent == planned - {failed["orders"][0]["symbol"]}  # only what was missing
    assert sorted(o.symbol for o in orders(state)) == sorted(planned)  # one order per symbol, none twice
    assert metric(retry.stderr)["DecisionsMissed"] == 0
    assert (state / "decisions" / "prophet-trend" / f"{DAY}.json").exists()
    again = cli(state, f"{DAY}T15:50:30-04:00")  # a later cycle that day finds the decision made
    assert json.loads(again.stdout)["status"] == "no_change" and len(orders(state)) == 4


def test_a_schedule_a_moment_ahead_of_the_broker_clock_still_decides(tmp_path):
    summary = run({"now": f"{DAY}T15:44:57-04:00"}, env=live_env(tmp_path, **WIDE))
    assert summary["status"] == "traded" and summary["decision"]["due"] is True, summary
    assert all(o["client_order_id"].split("-")[2] == "20220601" for o in summary["orders"])
    early = run({"now": "2022-06-02T15:44:30-04:00"}, env=live_env(tmp_path, **WIDE))
    assert early["status"] == "no_change" and "before today's decision time" in early["reason"]


def test_the_tolerance_applies_to_intraday_slots_and_the_window_opening():
    session = MarketCalendar().session(dt.date(2022, 6, 1))
    cadence = Cadence.parse("15min")
    at = dt.datetime(2022, 6, 1, 9, 44, 58, tzinfo=NEW_YORK)
    assert current_slot(at, session, cadence, 15, 5) == dt.datetime(2022, 6, 1, 9, 45, tzinfo=NEW_YORK)
    assert decision_due(at, session, cadence, None, 15, 5) is None
    assert decision_due(at - dt.timedelta(seconds=30), session, cadence, None, 15, 5) is not None


class FailingPaperBroker(PaperBroker):
    def submit(self, request):
        raise BrokerError("paper broker unreachable: connection reset")


@pytest.mark.parametrize("cause", ["error", "busy"])
def test_a_last_chance_that_passes_without_a_decision_is_measured(tmp_path, monkeypatch, cause, capsys):
    env = live_env(tmp_path, **WIDE, LEASE_WAIT_SECONDS="0.2")
    held = None
    if cause == "error":
        monkeypatch.setattr(live.cycle, "make_broker", lambda config, provider, now, keys, env:
                            FailingPaperBroker(config.paper_db, provider, now=now, cash=config.paper_cash))
    else:  # a lease still held (a hung or stale cycle): every cycle stands aside until it is free
        held = open_lease(str(tmp_path / "journal.jsonl"), "prophet-trend", LeaseSettings.from_env(env))
        held.acquire()
    first = run({"now": f"{DAY}T15:45:00-04:00"}, env=env)
    last = run({"now": f"{DAY}T15:50:00-04:00"}, env=env)
    assert first["status"] == last["status"] == cause, (first, last)
    if held is not None:
        held.release()
    assert first["decision_missed"] is False and last["decision_missed"] is True
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"cycle_metrics"' in x]
    assert [m["DecisionsMissed"] for m in lines] == [0, 1]
    assert "DecisionsMissed" in {m["Name"] for m in lines[-1]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def test_decided_days_holidays_and_dry_runs_miss_nothing(tmp_path):
    env = live_env(tmp_path, **WIDE)
    assert run({"now": f"{DAY}T15:45:00-04:00"}, env=env)["decision_missed"] is False
    assert run({"now": f"{DAY}T15:50:00-04:00"}, env=env)["decision_missed"] is False  # decided at 15:45
    assert run({"now": "2022-07-04T15:50:00-04:00"}, env=env)["decision_missed"] is False  # a holiday
    assert run({"now": "2022-06-02T15:50:00-04:00", "dry_run": True}, env=env)["decision_missed"] is False
    assert emf_line({"status": "busy", "decision_missed": True}, function="f", timestamp_ms=0)["DecisionsMissed"] == 1


def test_an_unreadable_daybook_mark_is_an_error_not_a_decided_day(tmp_path):
    marks = tmp_path / "decisions" / "prophet-trend"
    marks.mkdir(parents=True)
    (marks / f"{DAY}.json").write_text('{"cycle_id": "c1", "orders": [')  # torn
    summary = run({"now": f"{DAY}T15:50:00-04:00"}, env=live_env(tmp_path, **WIDE))
    assert summary["status"] == "error" and summary["error"]["type"] == "daybook", summary
    assert "cannot be read" in summary["error"]["message"] and summary["decision_missed"] is True
    assert orders(tmp_path) == []


def test_a_mark_that_fails_after_sending_is_unrecorded(tmp_path, monkeypatch):
    def broken(self, day, record):
        raise OSError("No space left on device")

    monkeypatch.setattr(LocalDaybook, "mark", broken)
    summary = run({"now": f"{DAY}T15:45:00-04:00"}, env=live_env(tmp_path, **WIDE))
    assert summary["status"] == "unrecorded" and summary["outcome"] == "traded", summary
    assert summary["daybook_error"] == "daybook write failed: No space left on device"
    assert len(orders(tmp_path)) == 4 and summary["error"] is None
    journaled = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert journaled["status"] == "unrecorded" and journaled["daybook_error"]
