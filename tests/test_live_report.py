"""The live report over replayed cycles: drift names exactly the injected event, bad journals are one line and
exit 2, the S3 journal is read from moto's server with the real boto3, and ``deploy status`` shows the last cycle."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _moto_server import FAKE_AWS_ENV, moto_server
from _replay_journal import REFUSAL, SAMPLE, replay, sessions
from live.drift import backtest_drift
from live.journal import S3Journal
from live.journal_read import JournalError, read_journal
from live.orders import client_order_id
from live.report import build_report, render, summary_text

ROOT = Path(__file__).resolve().parent.parent
SHORT = sessions(dt.date(2022, 6, 1), dt.date(2022, 6, 16))  # the PEP buy of June 16 is the window's last order
PEP_BUY = client_order_id("prophet-trend", dt.date(2022, 6, 16), "PEP", "buy")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return replay(tmp_path_factory.mktemp("clean"), SHORT)


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    return replay(tmp_path_factory.mktemp("refused"), SHORT, PEP_BUY)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_without_injected_events_live_and_backtest_do_not_drift(clean):
    drift = backtest_drift(read_journal(str(clean)).records)
    assert drift.backtest is not None and drift.note == ""
    # the same decisions, every one; their money differs only through the execution model (quantity, price)
    assert [d for d in drift.differences if d.kind == "decision"] == [] and len(drift.differences) + drift.matched >= 4
    assert drift.findings == [] and abs(drift.attribution.dollars["unexplained remainder"]) < 0.01
    assert (drift.first, drift.through) == (SHORT[0], SHORT[-1])


def test_drift_lists_exactly_the_refused_order(refused):
    drift = backtest_drift(read_journal(str(refused)).records)
    [diff] = [d for d in drift.differences if d.kind == "decision"]
    assert (diff.date, diff.symbol, diff.side) == (dt.date(2022, 6, 16), "PEP", "buy")
    assert diff.live == "refused" and diff.backtest.startswith("filled ")
    assert diff.reason == f"refused by the broker: PEP: {REFUSAL}"


def test_what_follows_a_refusal_is_attributed_to_it():
    # The bundled sample: the JNJ sell of June 21 is refused; live sells it the next day instead.
    drift = backtest_drift(read_journal(str(SAMPLE)).records)
    listed = [(d.date.isoformat(), d.symbol, d.side, d.reason.split(":")[0]) for d in drift.differences
              if d.kind == "decision"]
    assert listed == [("2022-06-21", "JNJ", "sell", "refused by the broker"),
                      ("2022-06-22", "JNJ", "sell", "follows the refused sell of JNJ on 2022-06-21")]


def test_the_report_shows_statuses_errors_orders_equity_and_benchmark(refused):
    report = build_report(read_journal(str(refused)))
    # one refused order no longer fails its cycle (per-order isolation): the report names it among the errors
    assert "error" not in report.counts and report.counts["traded"] >= 2
    fills = report.orders[report.orders["filled_qty"] > 0]
    assert len(fills) >= 4 and set(report.orders["status"]) >= {"filled", "refused"}
    assert list(report.errors["what"]) == ["PEP buy refused"] and REFUSAL in report.errors["error"].iloc[0]
    # equity per day is the account's, and positions are valued at the recorded prices
    records = read_journal(str(refused)).records
    assert list(report.equity["equity"]) == [r["inputs"]["account"]["equity"] for r in records]
    assert report.benchmark_name == "S&P 500 index (bundled)"
    assert report.equity["benchmark"].iloc[0] == report.equity["equity"].iloc[0]
    page = render(report)
    for figure in ("fig-statuses", "fig-equity", "fig-positions"):
        assert f'id="{figure}" alt=' in page
    assert "data:image/png;base64," in page and "<script" not in page and "http" not in page.split("<body>")[1]
    assert REFUSAL in page and 'id="drift"' in page
    text = summary_text(report)
    assert "2022-06-16 PEP buy [decision]: live refused" in text


def test_cli_writes_html_and_prints_the_summary(tmp_path):
    r = _cli("live", "report", "--journal", str(SAMPLE), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "statuses    market_closed 1, no_change 16, traded 5" in r.stdout
    assert "error       2022-06-21 15:45: JNJ sell refused: JNJ: asset is not tradable" in r.stdout
    assert "2022-06-21 JNJ sell" in r.stdout
    # the gap's split, with nothing left unexplained: the paper broker's equity is all fills and closes
    assert "gap         live -2.51% - backtest" in r.stdout and "findings    0 (" in r.stdout
    assert "  unexplained remainder                  +0.00   +0.0000%" in r.stdout
    assert (tmp_path / "out" / "live_report.html").stat().st_size > 20_000
    assert (tmp_path / "out" / "live_summary.txt").read_text().startswith("journal ")


def test_a_torn_tail_and_foreign_lines_are_counted_named_and_the_rest_drawn(tmp_path, refused):
    lines = refused.read_text().splitlines()
    path = tmp_path / "journal.jsonl"
    path.write_text("\n".join([*lines[:-1], '{"some": "other app"}', lines[-1][: len(lines[-1]) // 2]]))
    read = read_journal(str(path))
    assert len(read.records) == len(lines) - 1
    assert [(u.where, u.why) for u in read.unreadable] == [
        (f"line {len(lines)}", "not a cycle record (no cycle_id and status)"),
        (f"line {len(lines) + 1}", "truncated or malformed JSON")]
    r = _cli("live", "report", "--journal", str(path), "--out", str(tmp_path / "out"), "--no-drift")
    assert r.returncode == 0, r.stderr
    assert f"unreadable  2 record(s): line {len(lines)}" in r.stdout
    assert 'id="unreadable"' in (tmp_path / "out" / "live_report.html").read_text()


@pytest.mark.parametrize("content, message", [
    (b"", "no cycle records in"),
    (b'{"cycle_id": "20220601T1945', "1 unreadable (line 1: truncated or malformed JSON)"),
    (b"date,symbol,qty\n2022-06-01,KO,3\n", "2 unreadable (line 1: truncated or malformed JSON)"),
    (b"\x1f\x8b\x08\x00\xff\xfe", "1 unreadable (line 1: not UTF-8 text)"),
    (None, "no journal at"),
])
def test_bad_journals_are_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "journal.jsonl"
    if content is not None:
        path.write_bytes(content)
    r = _cli("live", "report", "--journal", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_since_after_the_last_cycle_and_a_bad_date_are_exit_2(tmp_path):
    r = _cli("live", "report", "--journal", str(SAMPLE), "--since", "2022-07-01", "--out", str(tmp_path))
    assert r.returncode == 2 and r.stderr == "error: --since 2022-07-01 is after the journal's last cycle (2022-06-29)\n"
    r = _cli("live", "report", "--journal", str(SAMPLE), "--since", "June", "--out", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: argument --since: 'June' is not a date")
    kept = read_journal(str(SAMPLE), since=dt.date(2022, 6, 21)).records
    assert {r["trading_date"] for r in kept} == {s.isoformat() for s in sessions(dt.date(2022, 6, 21), dt.date(2022, 6, 29))}


# ---------------------------------------------------------------- S3 (moto's server, the real boto3)

@pytest.fixture(scope="module")
def s3():
    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    try:
        with moto_server() as url:
            import boto3

            client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
            client.create_bucket(Bucket="journal-bucket")
            client.create_bucket(Bucket="empty")
            yield url, client
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def s3_journal(s3):
    url, client = s3
    import boto3

    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    session_client = boto3.client  # S3Journal writes through boto3.client("s3"): point it at moto
    boto3.client = lambda service, **kw: session_client(service, endpoint_url=url, region_name="us-east-1")
    try:
        journal = S3Journal("s3://journal-bucket/journal/")
        for record in records:
            journal.write(record)  # the writer the function uses: prefix/YYYY-MM-DD/<cycle id>.json
    finally:
        boto3.client = session_client
    client.put_object(Bucket="journal-bucket", Key="journal/decisions/prophet-trend/2022-06-01.json", Body=b'{"cycle_id": "x"}')
    client.put_object(Bucket="journal-bucket", Key="journal/2022-06-30/torn.json", Body=b'{"cycle_id": "20220630')
    return records


def test_the_s3_journal_is_read_by_day_folder_and_a_torn_object_is_named(s3, s3_journal):
    url, client = s3
    read = read_journal("s3://journal-bucket/journal", s3_client=client)
    assert [r["cycle_id"] for r in read.records] == [r["cycle_id"] for r in s3_journal]
    assert [(u.where, u.why) for u in read.unreadable] == [("journal/2022-06-30/torn.json",
                                                            "truncated or malformed JSON")]
    later = read_journal("s3://journal-bucket/journal", since=dt.date(2022, 6, 28), s3_client=client)
    assert {r["trading_date"] for r in later.records} == {"2022-06-28", "2022-06-29"}


def test_s3_without_cycles_is_one_line_and_exit_2(s3, s3_journal, tmp_path):
    url, client = s3
    with pytest.raises(JournalError, match=r"^no cycles under s3://empty/journal$"):
        read_journal("s3://empty/journal", s3_client=client)
    env = {"AWS_ENDPOINT_URL": url}
    r = _cli("live", "report", "--journal", "s3://empty/journal/", "--out", str(tmp_path), env=env)
    assert (r.returncode, r.stderr) == (2, "error: no cycles under s3://empty/journal/\n")
    r = _cli("live", "report", "--journal", "s3://no-such-bucket/journal", "--out", str(tmp_path), env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: s3://no-such-bucket/journal: NoSuchBucket")
    r = _cli("live", "report", "--journal", "s3://journal-bucket/journal", "--out", str(tmp_path / "s3"), "--no-drift", env=env)
    assert r.returncode == 0, r.stderr
    assert "unreadable  1 record(s): journal/2022-06-30/torn.json" in r.stdout


def test_deploy_status_shows_the_last_cycle_and_deploy_report_reads_the_deployed_journal(s3, s3_journal, tmp_path):
    from deploy.config import DeployConfig
    from deploy.status import render as render_status, status

    url, client = s3
    cfg = DeployConfig(bucket="journal-bucket", region="us-east-1", endpoint_url=url)
    state = status(cfg)
    last = state["last_cycle"]
    newest = s3_journal[-1]
    assert (last["now"], last["status"]) == (newest["now"], newest["status"])
    assert last["key"].startswith("journal/2022-06-29/")  # the torn newest object is named, not shown as the cycle
    text = render_status(state)
    assert f"last cycle  {newest['now']} no_change" in text and "order       none" in text
    assert "unreadable  journal/2022-06-30/torn.json (newer, left out)" in text
    # ... and a cycle that traded lists its orders
    traded = next(r for r in reversed(s3_journal) if r["status"] == "traded")
    client.put_object(Bucket="journal-bucket", Key="journal/2022-07-01/20220701T194500Z-zz.json", Body=json.dumps(traded).encode())
    client.delete_object(Bucket="journal-bucket", Key="journal/2022-06-30/torn.json")
    try:
        lines = render_status(status(cfg)).splitlines()
        orders = [line for line in lines if line.startswith("order ")]
        assert len(orders) == len(traded["orders"]) and all("filled" in line for line in orders)
        assert status(cfg.with_(bucket="empty"))["last_cycle"] is None
        r = _cli("deploy", "report", "--bucket", "journal-bucket", "--region", "us-east-1", "--endpoint-url", url,
                 "--out", str(tmp_path), "--no-drift")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("journal     s3://journal-bucket/journal: ")
        r = _cli("deploy", "report", "--bucket", "empty", "--region", "us-east-1", "--endpoint-url", url,
                 "--out", str(tmp_path))
        assert (r.returncode, r.stderr) == (2, "error: no cycles under s3://empty/journal\n")
    finally:
        client.delete_object(Bucket="journal-bucket", Key="journal/2022-07-01/20220701T194500Z-zz.json")
