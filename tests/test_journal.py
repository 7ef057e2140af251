"""The journal cannot lose or tear records, and a cycle whose journal or ledger cannot be written says so."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import live.journal
from _live_env import SLOT, live_env
from brokers.paper import PaperBroker
from live.cycle import run
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
CLOSED = "2022-07-04T15:45:00-04:00"  # a holiday: a quick cycle that still journals


def readable(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def stored_orders(state_dir: Path):
    return PaperBroker(state_dir / "paper.sqlite", SampleProvider()).orders()


def test_a_torn_tail_is_moved_aside_and_the_next_records_stay_readable(tmp_path):
    env = live_env(tmp_path)
    path = tmp_path / "journal.jsonl"
    first = run({"now": CLOSED}, env=env)
    torn = '{"cycle_id": "killed-mid-write", "status": "tra'  # a full disk or a kill cut this record short
    with open(path, "a") as handle:
        handle.write(torn)
    second = run({"now": CLOSED}, env=env)
    third = run({"now": CLOSED}, env=env)
    records = readable(path)
    assert [r["cycle_id"] for r in records] == [first["cycle_id"], second["cycle_id"], third["cycle_id"]]
    assert len(path.read_text().splitlines()) == 3  # nothing unreadable left in the journal
    assert torn in (tmp_path / "journal.jsonl.torn").read_text()  # moved aside, not lost
    assert records[1]["journal_repair"]["torn_bytes"] == len(torn) and second["journal_repair"]["torn_bytes"] == len(torn)
    assert "journal_repair" not in records[2]


def test_a_write_that_fills_the_disk_half_way_is_cut_back_and_reported(tmp_path, monkeypatch, capsys):
    env = live_env(tmp_path)
    path = tmp_path / "journal.jsonl"
    first = run({"now": CLOSED}, env=env)
    real = live.journal._write_all

    def disk_full(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(live.journal, "_write_all", disk_full)
    traded = run({"now": SLOT}, env=env)
    assert traded["status"] == "unrecorded" and traded["outcome"] == "traded", traded
    assert "No space left on device" in traded["journal_error"]
    assert len(stored_orders(tmp_path)) == len(traded["orders"]) > 0  # it did trade, and says it is not recorded
    metric = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"_aws"' in x][-1]
    assert metric["CycleErrors"] == 1 and metric["OrdersSent"] == len(traded["orders"])
    monkeypatch.setattr(live.journal, "_write_all", real)
    third = run({"now": CLOSED}, env=env)
    assert [r["cycle_id"] for r in readable(path)] == [first["cycle_id"], third["cycle_id"]]
    assert len(path.read_text().splitlines()) == 2


def test_an_unwritable_journal_makes_the_cli_exit_non_zero_after_trading(tmp_path):
    (tmp_path / "journal.jsonl").mkdir()  # the journal path cannot be opened for writing; its folder can
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_"))}
    env.update(live_env(tmp_path))
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT, "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "unrecorded" and summary["outcome"] == "traded" and "journal_error" in summary
    assert "was not recorded" in done.stderr
    assert len(stored_orders(tmp_path)) == len(summary["orders"]) > 0


def test_a_journal_in_a_missing_bucket_never_trades_unrecorded(tmp_path, monkeypatch):
    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        summary = run({"now": SLOT}, env=live_env(tmp_path, JOURNAL="s3://no-such-journal-bucket/cycles"))
    # the lease next to the journal cannot be taken, so nothing trades; and the journal failure is the status
    assert summary["status"] == "unrecorded" and summary["outcome"] == "error", summary
    assert summary["error"]["type"] == "lease" and "NoSuchBucket" in summary["error"]["message"]
    assert "NoSuchBucket" in summary["journal_error"]
    assert summary["orders"] == [] and not (tmp_path / "paper.sqlite").exists()


def test_an_s3_journal_write_failing_after_trading_is_unrecorded(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    real = live.journal.S3Journal.write

    def lost_bucket(self, record):
        self.bucket = "bucket-deleted-meanwhile"
        return real(self, record)

    with moto_environment(monkeypatch):
        boto3.client("s3").create_bucket(Bucket="journal-bucket")
        monkeypatch.setattr(live.journal.S3Journal, "write", lost_bucket)
        # a prefix of its own: moto's state (another test's ledger) outlives its server inside this process
        summary = run({"now": SLOT}, env=live_env(tmp_path, JOURNAL=f"s3://journal-bucket/{tmp_path.name}"))
    assert summary["status"] == "unrecorded" and summary["outcome"] == "traded"
    assert "NoSuchBucket" in summary["journal_error"] and summary["orders"]


def test_each_cycle_on_s3_writes_its_own_object(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="journal-bucket")
        prefix = tmp_path.name  # moto's state outlives its server inside this process
        env = live_env(tmp_path, JOURNAL=f"s3://journal-bucket/{prefix}")
        ids = [run({"now": CLOSED}, env=env)["cycle_id"] for _ in range(3)]
        listed = s3.list_objects_v2(Bucket="journal-bucket", Prefix=f"{prefix}/2022-07-04/")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(f"{prefix}/2022-07-04/{i}.json" for i in ids)


def test_a_ledger_that_cannot_be_written_before_sending_stops_the_cycle_before_any_order(tmp_path, monkeypatch):
    import live.ledger

    def refuse(self, text):
        raise live.ledger.LedgerError(f"cannot write the ledger {self.where}: disk full")

    monkeypatch.setattr(live.ledger._Record, "write", refuse)
    summary = run({"now": SLOT}, env=live_env(tmp_path))
    assert summary["status"] == "unrecorded" and summary["outcome"] == "error"
    assert summary["error"]["type"] == "ledger" and "disk full" in summary["ledger_error"]
    assert stored_orders(tmp_path) == []


def test_a_ledger_write_failing_after_sending_is_unrecorded_and_the_next_cycle_recovers(tmp_path, monkeypatch):
    import live.ledger

    real, calls = live.ledger._Record.write, []

    def second_fails(self, text):
        calls.append(1)
        if len(calls) == 2:  # the write-ahead succeeds, the record of what was sent fails
            raise live.ledger.LedgerError("cannot write the ledger: disk full")
        return real(self, text)

    monkeypatch.setattr(live.ledger._Record, "write", second_fails)
    env = live_env(tmp_path)
    summary = run({"now": SLOT}, env=env)
    assert summary["status"] == "unrecorded" and summary["outcome"] == "traded" and "disk full" in summary["ledger_error"]
    journaled = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert journaled["status"] == "unrecorded"  # the journal says so too
    monkeypatch.setattr(live.ledger._Record, "write", real)
    later = run({"now": "2022-06-02T15:45:00-04:00"}, env=env)  # the write-ahead names bring the fills back
    # the ledger as the later cycle found it, before it traded: the write-ahead names brought the fills back
    assert later["ledger"]["ledger"] == {o["symbol"]: o["qty"] for o in summary["orders"]}
