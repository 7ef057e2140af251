"""Fenced leases (issue 16, item 1): a cycle whose lease expired while it was still sending stops at its next order,
the cycle that took the lease over trades, and no name is bought twice; a host whose clock runs 20 minutes ahead
cannot take a live lease. Locally (flock + a versioned lease file) and on S3 (moto's server, conditional writes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import live.lease
from _live_env import live_env
from brokers.paper import PaperBroker
from live.cycle import run
from live.orders import client_order_id
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
WIDE = {"UNIVERSE": "KO,PG,JNJ,PEP,MRK,LLY,UNH", "STRATEGY_TOP_N": "7", "DECISION_TIME": "10:00"}
DAY1, DAY2 = "2022-06-01T10:14:59-04:00", "2022-06-02T10:14:59-04:00"

# The first cycle: its first order reaches the broker, then the call hangs (a slow network) until told to go on.
_SLOW_CYCLE = """
import json, os, sys, time
import brokers.calendar, live.history, marketdata.provider, strategies, strategies.engines.exact  # warm imports:
# the lease must only cover the cycle's own work before its first order, not an interpreter's start-up
from brokers.paper import PaperBroker
from live.cycle import run
submit, calls = PaperBroker.submit, []
def slow(self, request):
    order = submit(self, request)
    calls.append(order)
    if len(calls) == 1:
        print("SENT", flush=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
            time.sleep(0.05)
    return order
PaperBroker.submit = slow
print(json.dumps(run({"now": sys.argv[1]})), flush=True)
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_", "NOTIFY_", "LEASE_"))
            and k not in ("BROKER", "TRADING_ENABLED", "JOURNAL", "AWS_LAMBDA_FUNCTION_NAME")}


def _orders(state_dir: Path):
    return PaperBroker(state_dir / "paper.sqlite", SampleProvider()).orders()


def _overtaken_mid_submit(tmp_path: Path, journal: str, monkeypatch) -> None:
    go = tmp_path / "go"
    env = live_env(tmp_path, **WIDE, JOURNAL=journal)
    slow = subprocess.Popen([sys.executable, "-c", _SLOW_CYCLE, DAY1, str(go)], cwd=ROOT, text=True,
                            env={**_clean_env(), **env, "LEASE_SECONDS": "10"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert slow.stdout.readline().strip() == "SENT", slow.stderr.read()
        first, = _orders(tmp_path)
        # A second host whose clock runs 20 minutes ahead: to its clock the lease expired long ago. The store's
        # clock says it is live, so the host waits and is busy.
        real = live.lease._utcnow
        with monkeypatch.context() as skew:
            skew.setattr(live.lease, "_utcnow", lambda: real() + dt.timedelta(minutes=20))
            skewed = run({"now": DAY2}, env={**env, "LEASE_WAIT_SECONDS": "1"})
        assert skewed["status"] == "busy" and skewed["orders"] == [], skewed
        assert _orders(tmp_path) == [first]
        # Once the lease has expired on the store's clock, the next cycle takes it over and trades.
        started = time.monotonic()
        heir = run({"now": DAY2}, env={**env, "LEASE_WAIT_SECONDS": "45"})
        assert heir["status"] == "traded", heir
        assert time.monotonic() - started < 45
    finally:
        go.touch()
        out, err = slow.communicate(timeout=120)
    # The slow cycle wakes up without its lease: it stops before its next order, and says why.
    summary = json.loads(out.splitlines()[-1])
    assert summary["status"] == "error" and summary["error"]["type"] == "lease_lost", (summary, err)
    assert any(why in summary["error"]["message"] for why in ("taken over", "s left")), summary["error"]
    fates = Counter(o["fate"] for o in summary["orders"])
    assert fates["sent"] == 1 and fates["not_sent"] == len(summary["orders"]) - 1 >= 1, fates
    day1 = {client_order_id("prophet-trend", dt.date(2022, 6, 1), s, "buy") for s in WIDE["UNIVERSE"].split(",")}
    orders = _orders(tmp_path)
    assert [o for o in orders if o.client_order_id in day1] == [first]  # nothing sent after the takeover
    buys = Counter(o.symbol for o in orders if o.side == "buy")
    assert all(n == 1 for s, n in buys.items() if s != first.symbol), buys  # no name bought by both cycles
    # and the ledger is the heir's: the slow cycle did not overwrite it on its way out
    from live.ledger import open_ledger

    ledger = open_ledger(journal, "prophet-trend")
    assert ledger.quantities() == {s: p.qty for s, p in PaperBroker(tmp_path / "paper.sqlite",
                                                                     SampleProvider()).positions().items()}


def test_a_local_lease_that_expires_mid_submit_stops_the_old_cycle_and_no_name_is_bought_twice(tmp_path,
                                                                                               monkeypatch):
    _overtaken_mid_submit(tmp_path, str(tmp_path / "journal.jsonl"), monkeypatch)


def test_an_s3_lease_that_expires_mid_submit_stops_the_old_cycle_and_no_name_is_bought_twice(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        boto3.client("s3").create_bucket(Bucket="fence-bucket")
        _overtaken_mid_submit(tmp_path, f"s3://fence-bucket/{tmp_path.name}", monkeypatch)


def test_a_fence_fails_once_another_holder_has_taken_the_lease_and_near_its_end(tmp_path):
    from live.lease import LeaseLost, LeaseSettings, open_lease

    journal = str(tmp_path / "journal.jsonl")
    mine = open_lease(journal, "pt", LeaseSettings(wait=0, ttl=2))
    mine.acquire()
    mine.fence()
    with pytest.raises(live.lease.LeaseBusy):
        open_lease(journal, "pt", LeaseSettings(wait=0)).acquire()
    time.sleep(1.6)  # under a quarter of its lifetime left: no new order may start under it
    with pytest.raises(LeaseLost, match="left"):
        mine.fence()
    time.sleep(0.6)
    heir = open_lease(journal, "pt", LeaseSettings(wait=2))
    heir.acquire()  # expired on the file system's clock: taken over, though the holder's flock is still held
    with pytest.raises(LeaseLost):
        mine.fence()
    mine.release()  # a late release leaves the heir's lease alone
    heir.fence()
    heir.release()


@pytest.mark.parametrize("env, ttl", [({"LEASE_SECONDS": "60", "LEASE_MIN_SECONDS": "325"}, 325),
                                      ({"LEASE_SECONDS": "600", "LEASE_MIN_SECONDS": "325"}, 600),
                                      ({"LEASE_MIN_SECONDS": "325"}, 325), ({}, 900)])
def test_lease_seconds_cannot_make_the_lease_shorter_than_the_invocation(env, ttl):
    from live.lease import LeaseSettings

    assert LeaseSettings.from_env(env).ttl == ttl


@pytest.mark.parametrize("name", ["LEASE_SECONDS", "LEASE_MIN_SECONDS"])
def test_deploy_refuses_to_pin_the_lease_lifetime(name, capsys, monkeypatch):
    from deploy.__main__ import run as deploy_cli

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with pytest.raises(SystemExit) as exited:  # argparse's usage error: exit 2
        deploy_cli(["up", "--dry-run", "--region", "us-east-1", "--env", f"{name}=60"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == "", out
    line, = err.strip().splitlines()
    assert line.startswith(f"error: --env {name}: ") and ("deadline" in line or "remaining time" in line), line
