"""A live cycle under stress: doubled and concurrent invocations, a broker failing mid-cycle, bad configuration,
stale data, and secrets that must never leak."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

import live.cycle
from strategies import ProphetTrend
from _live_env import SLOT, live_env, stub_at_slot
from brokers.base import BrokerError
from brokers.paper import PaperBroker
from live.cycle import run
from live.orders import client_order_id
from live import cli
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
WIDE = {"UNIVERSE": "KO,PG,JNJ,PEP,MRK,LLY,UNH", "STRATEGY_TOP_N": "7"}  # four buys at SLOT


def stored_orders(state_dir: Path):
    return PaperBroker(state_dir / "paper.sqlite", SampleProvider()).orders()


def clean_env() -> dict[str, str]:
    """The test process's environment without anything that would pick a broker or change the strategy."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_")) and k not in ("BROKER", "TRADING_ENABLED")}


# -- doubled invocations -----------------------------------------------------------------------------------------

def test_the_same_slot_run_concurrently_gives_one_order_per_symbol(tmp_path):
    env = live_env(tmp_path, **WIDE)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(run({"now": SLOT}, env=env))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["status"] in ("traded", "no_change") for r in results), results
    orders = stored_orders(tmp_path)
    assert len(orders) == 4
    assert Counter((o.symbol, o.side) for o in orders).most_common(1)[0][1] == 1
    new = [o["client_order_id"] for r in results for o in r["orders"] if o["new"]]
    assert sorted(new) == sorted(o.client_order_id for o in orders)  # each order was new in exactly one cycle
    # and a later repeat of the slot changes nothing
    assert run({"now": SLOT}, env=env)["status"] == "no_change"
    assert len(stored_orders(tmp_path)) == 4


def test_two_processes_invoking_the_same_slot_make_one_order_per_symbol(tmp_path):
    env = {**clean_env(), **live_env(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "lambda_function.py", "--now", SLOT, "--quiet"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    orders = stored_orders(tmp_path)
    assert orders and len(orders) == len({(o.symbol, o.side) for o in orders})
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 2


# -- a broker failing mid-cycle ----------------------------------------------------------------------------------

class FlakyPaperBroker(PaperBroker):
    """Fails the ``fail_at``-th submission (counted across instances), as a dropped connection would."""

    submissions = 0
    fail_at: int | None = None

    def submit(self, request):
        type(self).submissions += 1
        if type(self).submissions == self.fail_at:
            raise BrokerError("paper broker unreachable: connection reset")
        return super().submit(request)


def test_a_retry_after_a_mid_cycle_failure_submits_only_what_is_missing(tmp_path, monkeypatch):
    def flaky(config, provider, now, keys, env):
        return FlakyPaperBroker(config.paper_db, provider, now=now, cash=config.paper_cash)

    monkeypatch.setattr(live.cycle, "make_broker", flaky)
    monkeypatch.setattr(FlakyPaperBroker, "submissions", 0)
    monkeypatch.setattr(FlakyPaperBroker, "fail_at", 2)
    env = live_env(tmp_path, **WIDE)
    planned = run({"now": SLOT, "dry_run": True}, env=env)["orders"]
    assert len(planned) >= 3
    monkeypatch.setattr(FlakyPaperBroker, "submissions", 0)

    failed = run({"now": SLOT}, env=env)
    assert failed["status"] == "error" and failed["error"]["type"] == "broker"
    assert "connection reset" in failed["error"]["message"]
    # the orders never sent are in the summary too (issue 11)
    assert [o["status"] for o in failed["orders"]] == ["filled", "error"] + ["not_sent"] * (len(planned) - 2)
    first = failed["orders"][0]["symbol"]
    journaled = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert journaled["status"] == "error" and journaled["orders"][0]["client_order_id"] == failed["orders"][0]["client_order_id"]

    retry = run({"now": SLOT}, env=env)
    assert retry["status"] == "traded", retry
    assert {o["symbol"] for o in retry["orders"] if o["new"]} == {o["symbol"] for o in planned} - {first}
    orders = stored_orders(tmp_path)
    assert sorted(o.symbol for o in orders) == sorted(o["symbol"] for o in planned)  # exactly one each
    assert FlakyPaperBroker.submissions == len(planned) + 1  # the failed one, then only the missing ones


def test_an_alpaca_answer_lost_after_the_order_was_taken_is_never_resubmitted(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, WIDE["UNIVERSE"].split(","), fill=True)
        # the 2nd order is taken but its answer is lost, and so is the follow-up lookup
        stub.state.fail("POST", "/v2/orders", status=None, after=1, commit=True)
        stub.state.fail("GET", "/v2/orders:by_client_order_id", status=503, after=2)
        env = live_env(tmp_path, **WIDE, **stub.env())
        failed = run({}, env=env)
        assert failed["status"] == "error" and failed["error"]["type"] == "broker", failed
        assert len(stub.state.orders) == 2
        retry = run({}, env=env)
        assert retry["status"] in ("traded", "no_change"), retry
        ids = [b["client_order_id"] for b in stub.state.submitted()]
        taken = [o["client_order_id"] for o in stub.state.orders]
        assert len(taken) == len(set(taken)) == 4
        assert Counter(ids).most_common(1)[0][1] == 1, ids  # no id was ever sent twice


def test_stale_orders_of_this_strategy_are_cancelled_and_busy_symbols_skipped(tmp_path):
    from _alpaca_stub import alpaca_stub

    sample = SampleProvider().data.closes.loc["2022-06-01"]
    with alpaca_stub() as stub:
        stub.state.prices.update({s: float(sample[s]) for s in WIDE["UNIVERSE"].split(",")})
        env = live_env(tmp_path, **WIDE, **stub.env())
        from brokers.alpaca import AlpacaBroker
        from brokers.base import OrderRequest

        broker = AlpacaBroker(stub.key_id, stub.secret, url=stub.url)
        stub.state.set_now("2022-06-01T10:00:00-04:00")
        ours = broker.submit(OrderRequest("LLY", "buy", 1, client_order_id=client_order_id(
            "prophet-trend", dt.date(2022, 6, 1), "LLY", "buy", slot=40)))
        manual = broker.submit(OrderRequest("MRK", "buy", 1, client_order_id="by-hand-1"))
        stub.state.set_now(SLOT)
        summary = run({}, env=env)
        assert summary["status"] in ("traded", "no_change"), summary
        assert stub.state.order(ours.id)["status"] == "canceled"
        assert stub.state.order(manual.id)["status"] in ("new", "accepted")  # not ours: left alone
        skipped = {s["symbol"] for s in summary["skipped"] if "open" in s["reason"]}
        assert skipped == {"LLY", "MRK"}
        assert {o["symbol"] for o in summary["orders"]}.isdisjoint({"LLY", "MRK"})


def test_an_unexpected_failure_is_journaled_and_returned(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(ProphetTrend, "decide", broken)
    summary = run({"now": SLOT}, env=live_env(tmp_path))
    assert summary["status"] == "error" and summary["error"] == {"type": "internal",
                                                                  "message": "ZeroDivisionError: division by zero"}
    record = json.loads((tmp_path / "journal.jsonl").read_text())
    assert record["status"] == "error" and record["inputs"]["account"]["cash"] == 100_000.0
    assert stored_orders(tmp_path) == []


# -- bad configuration and bad data ------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"BROKER": "alpaca"}, "BROKER=alpaca needs Alpaca keys"),
    ({"APCA_API_KEY_ID": "PKONLYHALF"}, "APCA_API_SECRET_KEY is not set"),
    ({"STRATEGY_TOP_N": "ten"}, "STRATEGY_TOP_N must be a whole number"),
    ({"STRATEGY_BAND": "2"}, "STRATEGY_BAND: band must be a fraction"),
    ({"MAX_ORDER_NOTIONAL": "1e3x"}, "MAX_ORDER_NOTIONAL must be a number"),
    ({"TRADING_ENABLED": "maybe"}, "TRADING_ENABLED must be true or false"),
    ({"MARKET_DATA": "bloomberg"}, "MARKET_DATA must be sample, yfinance, alpaca or csv:PATH"),
])
def test_bad_configuration_is_one_clear_line_and_exit_2(tmp_path, monkeypatch, capsys, settings, message):
    for key in set(os.environ) - set(clean_env()):
        monkeypatch.delenv(key)
    for key, value in {**live_env(tmp_path), **settings}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["--now", SLOT]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert out == "" and "Traceback" not in err


def test_the_cli_process_reports_bad_input_without_a_traceback(tmp_path):
    env = {**clean_env(), **live_env(tmp_path), "MAX_POSITIONS": "-3"}
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: MAX_POSITIONS must be a whole number of at least 1 or none, got -3\n"
    assert "Traceback" not in done.stderr
    bad_now = subprocess.run([sys.executable, "lambda_function.py", "--now", "yesterday", "--quiet"], cwd=ROOT,
                             env={**clean_env(), **live_env(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert bad_now.returncode == 2 and bad_now.stderr.startswith("error: now must be an ISO 8601 time")


def test_replaying_a_moment_is_refused_on_alpaca_unless_dry_run(tmp_path):
    env = live_env(tmp_path, APCA_API_KEY_ID="PKX", APCA_API_SECRET_KEY="never-used",
                   APCA_API_BASE_URL="http://127.0.0.1:9")
    summary = run({"now": SLOT}, env=env)
    assert summary["status"] == "error" and summary["error"]["type"] == "config"
    assert "paper broker or a dry run" in summary["error"]["message"]


def test_a_dry_run_may_replay_a_moment_on_alpaca(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub.state.set_now("2026-01-03T12:00:00-05:00")  # Alpaca's own clock: a Saturday, long after the replay
        summary = run({"now": SLOT, "dry_run": True}, env=live_env(tmp_path, **stub.env()))
        assert summary["status"] == "dry_run" and summary["now"] == SLOT, summary
        assert summary["orders"] and stub.state.submitted() == []


def test_unknown_symbols_and_stale_data_are_data_errors(tmp_path):
    # a listed symbol the prices lack is refused by the configuration check (test_universe_checks)
    unknown = run({"now": SLOT}, env=live_env(tmp_path / "a", UNIVERSE="NOPE,NADA"))
    assert unknown["status"] == "error" and unknown["error"]["type"] == "config" and "NOPE" in unknown["error"]["message"]
    # a moment after the sample ends: the newest close is months old
    stale = run({"now": "2023-06-01T15:45:00-04:00"}, env=live_env(tmp_path / "b"))
    assert stale["status"] == "error" and "stale prices" in stale["error"]["message"]
    assert stored_orders(tmp_path / "a") == stored_orders(tmp_path / "b") == []


# -- secrets -----------------------------------------------------------------------------------------------------

def _assert_nowhere(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def test_secrets_never_reach_the_summary_the_journal_or_the_logs(tmp_path, capsys):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, WIDE["UNIVERSE"].split(","), fill=True)
        stub.state.fail("POST", "/v2/orders", status=500, after=1, body={"message": f"echo {stub.secret}"})
        env = live_env(tmp_path, LOG_LEVEL="DEBUG", **WIDE, **stub.env())
        results = [run({}, env=env), run({}, env=env)]
        assert [r["status"] for r in results] == ["error", "traded"], results
        logs = capsys.readouterr().err
        journal = (tmp_path / "journal.jsonl").read_text()
        assert '"event": "order"' in logs and len(journal.splitlines()) == 2
        for secret in (stub.secret, stub.key_id):
            _assert_nowhere(secret, json.dumps(results), journal, logs)


def test_keys_from_secrets_manager_and_ssm_through_moto(tmp_path, monkeypatch, capsys):
    import boto3

    from _alpaca_stub import alpaca_stub
    from _moto_server import moto_environment

    with moto_environment(monkeypatch), alpaca_stub() as stub:
        stub.state.set_now("2022-07-04T12:00:00-04:00")  # a holiday: the cycle stops at the clock
        blob = json.dumps({"APCA_API_KEY_ID": stub.key_id, "APCA_API_SECRET_KEY": stub.secret})
        boto3.client("secretsmanager").create_secret(Name="prophettrend/alpaca", SecretString=blob)
        boto3.client("ssm").put_parameter(Name="/prophettrend/alpaca", Value=blob, Type="SecureString")
        for source in ({"ALPACA_SECRET_NAME": "prophettrend/alpaca"},
                       {"ALPACA_SSM_PARAMETER": "/prophettrend/alpaca"}):
            summary = run({}, env=live_env(tmp_path, APCA_API_BASE_URL=stub.url, **source))
            assert summary["status"] == "market_closed" and summary["broker"] == "alpaca-paper", summary
            journal = (tmp_path / "journal.jsonl").read_text()
            _assert_nowhere(stub.secret, json.dumps(summary), journal, capsys.readouterr().err)
        missing = run({}, env=live_env(tmp_path, ALPACA_SECRET_NAME="no/such/secret"))
        assert missing["status"] == "error" and missing["error"]["type"] == "config"
        assert "ResourceNotFoundException" in missing["error"]["message"]
