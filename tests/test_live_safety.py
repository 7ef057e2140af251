"""Live money safety (issue 11): cycles serialised per strategy, refusals isolated per symbol, failures seen by
Lambda and CloudWatch, strict events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import live.cycle
from _live_env import SLOT, live_env
from brokers.base import OrderRefused
from brokers.paper import PaperBroker
from lambda_function import lambda_handler
from live.cycle import run
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
WIDE = {"UNIVERSE": "KO,PG,JNJ,PEP,MRK,LLY,UNH", "STRATEGY_TOP_N": "7",
        "DECISION_TIME": "10:00"}  # four buys at SLOT; a daily decision due at both sides of 10:15
BEFORE, AFTER = "2022-06-01T10:14:59-04:00", "2022-06-01T10:15:01-04:00"  # either side of a slot boundary


def stored_orders(state_dir: Path):
    path = state_dir / "paper.sqlite"
    return PaperBroker(path, SampleProvider()).orders() if path.exists() else []


def positions(state_dir: Path) -> dict[str, int]:
    return {s: p.qty for s, p in PaperBroker(state_dir / "paper.sqlite", SampleProvider()).positions().items()}


def journal(state_dir: Path) -> list[dict]:
    path = state_dir / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_", "NOTIFY_", "LEASE_"))
            and k not in ("BROKER", "TRADING_ENABLED", "JOURNAL", "AWS_LAMBDA_FUNCTION_NAME")}


def emf_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]


# -- 1. serialised cycles ----------------------------------------------------------------------------------------

def _single_cycle_positions(tmp_path: Path) -> dict[str, int]:
    alone = tmp_path / "alone"
    assert run({"now": BEFORE}, env=live_env(alone, **WIDE))["status"] == "traded"
    return positions(alone)


def test_adjacent_slots_run_concurrently_do_not_double_the_buys(tmp_path):
    expected = _single_cycle_positions(tmp_path)
    shared = tmp_path / "shared"
    env = live_env(shared, **WIDE)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda m=m: results.append(run({"now": m}, env=env)))
               for m in [BEFORE, AFTER] * 4]  # 8 concurrent invocations, two slots
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["status"] in ("traded", "no_change", "busy") for r in results), [r["status"] for r in results]
    orders = stored_orders(shared)
    buys = Counter(o.symbol for o in orders if o.side == "buy")
    assert buys and max(buys.values()) == 1, buys  # not one buy per slot
    assert positions(shared) == expected  # positions not doubled
    assert len(journal(shared)) == 8  # every invocation journaled, busy ones too
    for r in results:
        if r["status"] == "busy":
            assert r["orders"] == [] and "holds" in r["reason"]


def test_adjacent_slots_in_separate_processes_do_not_double_the_buys(tmp_path):
    expected = _single_cycle_positions(tmp_path)
    shared = tmp_path / "shared"
    env = {**clean_env(), **live_env(shared, **WIDE, LEASE_WAIT_SECONDS="120")}
    procs = [subprocess.Popen([sys.executable, "lambda_function.py", "--now", moment, "--quiet"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for moment in [BEFORE, AFTER] * 2]  # 4: each process costs seconds of imports on a shared machine
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    statuses = Counter(json.loads(out)["status"] for out, _ in outputs)
    assert statuses["traded"] == 1 and statuses["no_change"] == 3, statuses  # waited in turn, then saw the book
    buys = Counter(o.symbol for o in stored_orders(shared) if o.side == "buy")
    assert max(buys.values()) == 1 and positions(shared) == expected


def test_a_cycle_that_cannot_take_the_lease_is_busy_trades_nothing_and_is_journaled(tmp_path, capsys):
    from live.lease import LeaseSettings, open_lease

    env = live_env(tmp_path, LEASE_WAIT_SECONDS="0.3")
    holder = open_lease(str(tmp_path / "journal.jsonl"), "prophet-trend", LeaseSettings(wait=0))
    holder.acquire()
    try:
        started = time.monotonic()
        summary = run({"now": SLOT}, env=env)
        waited = time.monotonic() - started
    finally:
        holder.release()
    assert summary["status"] == "busy" and summary["orders"] == [] and waited >= 0.3
    assert stored_orders(tmp_path) == []
    assert journal(tmp_path)[-1]["status"] == "busy"
    metric, = emf_lines(capsys.readouterr().err)
    assert (metric["CyclesBusy"], metric["CycleErrors"], metric["OrdersSent"]) == (1, 0, 0)
    assert run({"now": SLOT}, env=env)["status"] == "traded"  # released: the next cycle proceeds


_KILLED_CYCLE = """
import sys, time
from brokers.paper import PaperBroker
from live.cycle import run
submit = PaperBroker.submit
def slow(self, request):
    order = submit(self, request)
    print("SENT", flush=True)
    time.sleep(600)  # killed here, holding the lease, one order sent
    return order
PaperBroker.submit = slow
run({"now": sys.argv[1]})
"""


def test_a_cycle_killed_mid_cycle_frees_its_lease_and_the_next_submits_no_duplicates(tmp_path):
    env = {**clean_env(), **live_env(tmp_path, **WIDE)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CYCLE, BEFORE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "SENT"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    first, = stored_orders(tmp_path)
    # the next slot's cycle proceeds at once (the kernel dropped the flock) and knows the killed cycle's order
    summary = run({"now": AFTER}, env=live_env(tmp_path, **WIDE, LEASE_WAIT_SECONDS="1"))
    assert summary["status"] == "traded", summary
    assert summary["ledger"]["ledger"][first.symbol] == first.qty  # the write-ahead name was found
    buys = Counter(o.symbol for o in stored_orders(tmp_path) if o.side == "buy")
    assert max(buys.values()) == 1, buys
    alone = _single_cycle_positions(tmp_path)
    held = positions(tmp_path)
    assert set(held) == set(alone) and all(held[s] < 1.5 * alone[s] for s in held), (held, alone)  # not doubled


def test_s3_leases_exclude_each_other_and_an_expired_one_is_taken_over(monkeypatch):
    import boto3

    from _moto_server import moto_environment
    from live.lease import LeaseBusy, LeaseSettings, S3Lease

    with moto_environment(monkeypatch):
        boto3.client("s3").create_bucket(Bucket="lease-bucket")
        inside, most, errors = [0], [0], []
        lock = threading.Lock()

        def cycle():
            lease = S3Lease("lease-bucket", "cycles/lease/pt.json", LeaseSettings(wait=30, ttl=60))
            try:
                lease.acquire()
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.05)
                with lock:
                    inside[0] -= 1
                lease.release()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=cycle) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and most[0] == 1
        s3 = boto3.client("s3")
        assert s3.list_objects_v2(Bucket="lease-bucket").get("KeyCount") == 0  # released

        # a holder that died (never released): busy until its lease expires, then taken over
        dead = S3Lease("lease-bucket", "cycles/lease/pt.json", LeaseSettings(wait=0, ttl=1.5))
        dead.acquire()
        with pytest.raises(LeaseBusy):
            S3Lease("lease-bucket", "cycles/lease/pt.json", LeaseSettings(wait=0.2)).acquire()
        heir = S3Lease("lease-bucket", "cycles/lease/pt.json", LeaseSettings(wait=5))
        heir.acquire()
        owner = json.loads(s3.get_object(Bucket="lease-bucket", Key="cycles/lease/pt.json")["Body"].read())["owner"]
        assert owner == heir.owner
        dead.release()  # its late release must not delete the heir's lease
        assert s3.list_objects_v2(Bucket="lease-bucket").get("KeyCount") == 1
        heir.release()
        assert s3.list_objects_v2(Bucket="lease-bucket").get("KeyCount") == 0


def test_a_cycle_with_an_s3_journal_holds_its_lease_and_keeps_its_ledger_there(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="journal-bucket")
        p = tmp_path.name  # a prefix of its own: moto's state outlives its server inside this process
        env = live_env(tmp_path, JOURNAL=f"s3://journal-bucket/{p}")
        summary = run({"now": SLOT}, env=env)
        assert summary["status"] == "traded" and summary["lease"] == f"s3://journal-bucket/{p}/lease/prophet-trend.json"
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="journal-bucket")["Contents"]}
        assert f"{p}/lease/prophet-trend.json" not in keys  # released
        ledger = json.loads(s3.get_object(Bucket="journal-bucket", Key=f"{p}/ledger/prophet-trend.json")["Body"].read())
        bought = {o["symbol"]: o["qty"] for o in summary["orders"]}
        assert {e["symbol"]: e["filled_qty"] for e in ledger["orders"].values()} == bought
        # a live lease held elsewhere: the cycle is busy
        s3.put_object(Bucket="journal-bucket", Key=f"{p}/lease/prophet-trend.json",
                      Body=json.dumps({"owner": "elsewhere", "expires": "2999-01-01T00:00:00+00:00"}).encode())
        try:
            busy = run({"now": SLOT}, env={**env, "LEASE_WAIT_SECONDS": "0.2"})
        finally:  # moto's state outlives its server inside this process
            s3.delete_object(Bucket="journal-bucket", Key=f"{p}/lease/prophet-trend.json")
        assert busy["status"] == "busy" and busy["orders"] == []


# -- 3. per-symbol isolation -------------------------------------------------------------------------------------

class RefusingPaperBroker(PaperBroker):
    """Refuses orders for ``refuse`` symbols as Alpaca refuses them (422 not tradable / 403 halted)."""

    refuse: dict[str, tuple[str, int]] = {}

    def submit(self, request):
        if request.symbol in self.refuse:
            reason, status = self.refuse[request.symbol]
            raise OrderRefused(reason, status)
        return super().submit(request)


def test_a_refused_symbol_is_recorded_and_skipped_and_every_other_order_proceeds(tmp_path, monkeypatch):
    env = live_env(tmp_path, **WIDE)
    planned = run({"now": SLOT, "dry_run": True}, env=live_env(tmp_path / "plan", **WIDE))["orders"]
    first, second = planned[0]["symbol"], planned[2]["symbol"]
    monkeypatch.setattr(RefusingPaperBroker, "refuse", {first: (f"asset {first} is not tradable", 422),
                                                       second: (f"asset {second} is halted", 403)})
    monkeypatch.setattr(live.cycle, "make_broker", lambda config, provider, now, keys, env: RefusingPaperBroker(
        config.paper_db, provider, now=now, cash=config.paper_cash))
    summary = run({"now": SLOT}, env=env)
    assert summary["status"] == "traded", summary
    fates = {o["symbol"]: o["fate"] for o in summary["orders"]}
    assert fates == {o["symbol"]: "refused" if o["symbol"] in (first, second) else "sent" for o in planned}
    refused = {o["symbol"]: (o["refusal"], o["refusal_status"]) for o in summary["orders"] if o["fate"] == "refused"}
    assert refused == {first: (f"asset {first} is not tradable", 422), second: (f"asset {second} is halted", 403)}
    assert sorted(o.symbol for o in stored_orders(tmp_path)) == sorted(set(fates) - {first, second})
    assert {(p["symbol"], p["fate"]) for p in summary["plan"]} == set(fates.items())


def test_the_plan_lists_intents_the_limits_skipped(tmp_path):
    summary = run({"now": SLOT}, env=live_env(tmp_path, **WIDE, MAX_POSITIONS="1"))
    fates = Counter(p["fate"] for p in summary["plan"])
    assert fates["sent"] == 1 and fates["skipped"] == len(summary["plan"]) - 1 >= 1


def test_a_refused_order_through_the_alpaca_stub_skips_only_that_symbol(tmp_path):
    from _alpaca_stub import alpaca_stub
    from _live_env import stub_at_slot
    from brokers.alpaca import AlpacaBroker
    from brokers.base import OrderRequest

    with alpaca_stub() as stub:
        stub_at_slot(stub, WIDE["UNIVERSE"].split(","), fill=True)
        stub.state.fail("POST", "/v2/orders", status=422, body={"code": 42210000, "message": "asset is not tradable"})
        try:
            AlpacaBroker(stub.key_id, stub.secret, url=stub.url).submit(OrderRequest("KO", "buy", 1, "probe-1"))
        except OrderRefused:
            pass
        except Exception:  # noqa: BLE001
            pytest.skip("brokers.alpaca does not raise OrderRefused for a 422 yet (the brokers engineer's change)")
        stub.state.fail("POST", "/v2/orders", status=422, body={"code": 42210000, "message": "asset is not tradable"})
        summary = run({}, env=live_env(tmp_path, **WIDE, **stub.env()))
        assert summary["status"] == "traded", summary
        assert [o["fate"] for o in summary["orders"]] == ["refused", "sent", "sent", "sent"]
        assert "not tradable" in summary["orders"][0]["refusal"]


# -- 4. failures that are seen -----------------------------------------------------------------------------------

def test_lambda_sees_a_failed_cycle_after_it_is_journaled(tmp_path, monkeypatch):
    for key in set(os.environ) - set(clean_env()):
        monkeypatch.delenv(key)
    for key, value in live_env(tmp_path, UNIVERSE="NOPE,NADA").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(Exception) as failed:  # lambda_function.CycleFailed
        lambda_handler({"now": SLOT}, None)
    assert "NOPE" in str(failed.value) and failed.value.summary["status"] == "error"
    assert journal(tmp_path)[-1]["cycle_id"] == failed.value.summary["cycle_id"]
    monkeypatch.setenv("UNIVERSE", "KO,PG")
    assert lambda_handler({"now": "2022-07-04T15:45:00-04:00"}, None)["status"] == "market_closed"  # no raise


def test_every_cycle_prints_one_embedded_metric_line(tmp_path, capsys):
    traded = run({"now": SLOT}, env=live_env(tmp_path / "a", AWS_LAMBDA_FUNCTION_NAME="pt-fn"))
    metric, = emf_lines(capsys.readouterr().err)
    directive = metric["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ProphetTrend" and directive["Dimensions"] == [["Function"]]
    assert {m["Name"] for m in directive["Metrics"]} >= {"Cycles", "CycleErrors", "OrdersSent"}
    assert (metric["Function"], metric["Cycles"], metric["CycleErrors"]) == ("pt-fn", 1, 0)
    assert metric["OrdersSent"] == len(traded["orders"]) > 0
    run({"now": SLOT}, env=live_env(tmp_path / "b", UNIVERSE="NOPE"))
    failed, = emf_lines(capsys.readouterr().err)
    assert (failed["Function"], failed["CycleErrors"], failed["OrdersSent"]) == ("local", 1, 0)


def test_fills_are_notified_on_the_sns_topic(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="prophettrend-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        env = live_env(tmp_path, NOTIFY_TOPIC_ARN=topic)
        traded = run({"now": SLOT}, env=env)
        assert traded["status"] == "traded" and traded["notification"]
        again = run({"now": SLOT}, env=env)
        assert again["status"] == "no_change" and again.get("notification") is None
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert len(got) == 1
        note = json.loads(got[0]["Body"])
        assert f"{len(traded['orders'])} orders sent" in note["Subject"]
        assert {o["symbol"] for o in json.loads(note["Message"])["sent"]} == {o["symbol"] for o in traded["orders"]}


# -- 6. strict inputs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nope", "", 2, 0.5, [True], {"yes": 1}])
def test_a_dry_run_that_is_not_plainly_true_or_false_is_an_input_error_and_trades_nothing(tmp_path, value):
    summary = run({"now": SLOT, "dry_run": value}, env=live_env(tmp_path))
    assert summary["status"] == "error" and summary["error"]["type"] == "input", summary
    assert "dry_run must be true or false" in summary["error"]["message"]
    assert stored_orders(tmp_path) == [] and journal(tmp_path)[-1]["status"] == "error"


@pytest.mark.parametrize("value, dry", [(True, True), ("TRUE", True), (1, True), ("yes", True), ("off", False),
                                        (False, False), (0, False), (None, False)])
def test_plain_true_and_false_values_of_dry_run_are_understood(tmp_path, value, dry):
    summary = run({"now": "2022-07-04T15:45:00-04:00", "dry_run": value}, env=live_env(tmp_path))
    assert summary["status"] == "market_closed" and summary["dry_run"] is dry


def test_a_misspelt_dry_run_key_trades_nothing(tmp_path):
    summary = run({"now": SLOT, "dryRun": True}, env=live_env(tmp_path))
    assert summary["status"] == "error" and "spelt dry_run" in summary["error"]["message"]
    assert stored_orders(tmp_path) == []


@pytest.mark.parametrize("event, kind", [(["now", SLOT], "a list"), ("dry_run", "a string"), (42, "a number")])
def test_a_non_dict_event_gets_an_error_summary_and_is_journaled(tmp_path, event, kind):
    summary = run(event, env=live_env(tmp_path))
    assert summary["status"] == "error" and summary["error"] == {
        "type": "input", "message": f"the event must be a JSON object, got {kind}"}
    assert journal(tmp_path)[-1]["cycle_id"] == summary["cycle_id"] and stored_orders(tmp_path) == []


def test_in_lambda_the_lease_lasts_as_long_as_the_invocation_may(tmp_path, monkeypatch):
    seen = {}

    def fake_run(event, env=None, **kwargs):
        seen.update(env)
        return {"status": "no_change"}

    class Context:
        def get_remaining_time_in_millis(self):
            return 295_000

    from live.lease import LeaseSettings

    monkeypatch.setenv("LEASE_SECONDS", "60")  # shorter than the invocation: it cannot shorten the lease
    monkeypatch.setattr("lambda_function.run", fake_run)
    assert lambda_handler({}, Context())["status"] == "no_change"
    assert seen["LEASE_MIN_SECONDS"] == "325" and LeaseSettings.from_env(seen).ttl == 325
    monkeypatch.setenv("LEASE_SECONDS", "600")  # longer is allowed
    lambda_handler({}, Context())
    assert LeaseSettings.from_env(seen).ttl == 600


def test_lambda_refuses_to_trade_alpaca_with_a_journal_that_dies_with_the_container(tmp_path):
    from _alpaca_stub import alpaca_stub
    from _live_env import stub_at_slot

    with alpaca_stub() as stub:
        stub_at_slot(stub, ["KO", "PG", "JNJ", "PEP", "MRK"], fill=True)
        summary = run({}, env=live_env(tmp_path, AWS_LAMBDA_FUNCTION_NAME="pt-fn", **stub.env()))
        assert summary["status"] == "error" and summary["error"]["type"] == "config"
        assert "JOURNAL must be s3://" in summary["error"]["message"] and stub.state.submitted() == []


def test_a_bracketed_sell_waits_for_alpaca_to_release_the_shares_of_its_cancelled_legs():
    """Alpaca confirms a cancel later (pending_cancel): selling at once would be refused for shares still held."""
    from brokers.alpaca import AlpacaBroker
    from brokers.base import OrderRequest
    from live.orders import submit_idempotently
    from strategies.base import OrderIntent
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub.state.prices["AAPL"] = 150.0
        stub.state.fill_market_orders = True
        broker = AlpacaBroker(stub.key_id, stub.secret, url=stub.url)
        broker.submit(OrderRequest("AAPL", "buy", 10, "pt-20220601-AAPL-buy", stop_loss_price=140.0,
                                   take_profit_price=170.0))
        stub.state.cancel_delay = 4  # the cancels are confirmed only after a few more requests
        legs = [o for o in broker.open_orders() if o.symbol == "AAPL"]
        assert len(legs) == 2 and broker.positions()["AAPL"].qty_available == 0
        sell = OrderRequest("AAPL", "sell", 10, "pt-20220602-AAPL-sell")
        records, failure = submit_idempotently(broker, [(sell, OrderIntent("AAPL", "sell", 10, 150.0, "x"))],
                                               dry_run=False, exits={"AAPL": legs})
        assert failure is None and records[0]["fate"] == "sent", records
        assert broker.order_by_client_id("pt-20220602-AAPL-sell").status == "filled"
        # and with cancels that never confirm in time, the sell is refused for this order only, with the reason
        broker.submit(OrderRequest("AAPL", "buy", 5, "pt-20220603-AAPL-buy", stop_loss_price=140.0))
        stub.state.cancel_delay = None
        legs = [o for o in broker.open_orders() if o.symbol == "AAPL"]
        records, failure = submit_idempotently(broker, [(OrderRequest("AAPL", "sell", 5, "pt-20220604-AAPL-sell"),
                                                         OrderIntent("AAPL", "sell", 5, 150.0, "x"))],
                                               dry_run=False, exits={"AAPL": legs}, release_wait_s=0.3)
        assert failure is None and records[0]["fate"] == "refused" and "available" in records[0]["refusal"]
