"""One live cycle end to end: the CLI replay, market hours, kill switch, limits, journal, and Alpaca through the stub."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _live_env import SLOT, SYMBOLS, live_env, stub_at_slot
from brokers.paper import PaperBroker
from lambda_function import lambda_handler
from live.cycle import run
from live.orders import client_order_id
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]


def paper_orders(state_dir: Path):
    path = state_dir / "paper.sqlite"
    return PaperBroker(path, SampleProvider()).orders() if path.exists() else []


def journal_lines(state_dir: Path) -> list[dict]:
    path = state_dir / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_cli_replay_trades_on_the_bundled_sample(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_", "BROKER"))}
    env.update(live_env(tmp_path, LOG_LEVEL="INFO"))
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "traded"
    assert summary["now"] == "2022-06-01T15:45:00-04:00" and summary["slot"] == 63
    assert summary["orders"], summary
    for order in summary["orders"]:
        assert order["client_order_id"] == client_order_id("prophet-trend", dt.date(2022, 6, 1), order["symbol"],
                                                           order["side"])
        assert order["status"] == "filled" and order["new"] is True
        assert set(order) >= {"symbol", "side", "qty", "client_order_id", "status"}
    assert set(summary["signals"]) <= set(SYMBOLS)
    for sig in summary["signals"].values():
        assert set(sig) >= {"price", "forecast", "decision"}
    assert summary["provenance"]["data"]["last_date"] == "2022-06-01"
    stored = paper_orders(tmp_path)
    assert sorted(o.client_order_id for o in stored) == sorted(o["client_order_id"] for o in summary["orders"])
    record, = journal_lines(tmp_path)
    assert record["status"] == "traded" and record["cycle_id"] == summary["cycle_id"]
    assert record["inputs"]["account"]["cash"] == 100_000.0 and record["inputs"]["config"]["strategy"]["params"]["history"] == 60
    # structured log lines on stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert events[0] == "cycle_start" and events[-1] == "cycle_end" and "order" in events


def test_lambda_handler_returns_a_json_summary(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith(("APCA_", "ALPACA_", "STRATEGY_")) or key in ("BROKER", "TRADING_ENABLED"):
            monkeypatch.delenv(key)
    for key, value in live_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    summary = lambda_handler({"now": SLOT, "dry_run": True}, None)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["status"] == "dry_run" and summary["orders"]
    assert paper_orders(tmp_path) == []


@pytest.mark.parametrize("moment, why", [
    ("2022-07-04T15:45:00-04:00", "no session"),                   # Independence Day
    ("2022-06-04T15:45:00-04:00", "weekend"),                      # Saturday
    ("2022-11-25T13:30:00-05:00", "closes at 13:00 (early close)"),  # the day after Thanksgiving
    ("2022-11-25T12:55:00-05:00", "closes at 13:00 (early close)"),  # inside the last 10 minutes
    ("2022-06-01T16:30:00-04:00", "after the trading window"),
    ("2022-06-01T09:40:00-04:00", "before the trading window"),
])
def test_closed_market_gives_market_closed_and_no_orders(tmp_path, moment, why):
    summary = run({"now": moment}, env=live_env(tmp_path))
    assert summary["status"] == "market_closed", summary
    assert why in summary["reason"]
    assert summary["orders"] == [] and paper_orders(tmp_path) == []
    assert journal_lines(tmp_path)[0]["status"] == "market_closed"


def test_early_close_day_trades_before_its_early_close(tmp_path):
    summary = run({"now": "2022-11-25T12:45:00-05:00", "dry_run": True}, env=live_env(tmp_path))
    assert summary["status"] == "dry_run", summary


@pytest.mark.parametrize("day, utc_open", [("2022-03-14", "13:30"),   # first Monday of daylight saving: EDT
                                            ("2022-11-07", "14:30")])  # first Monday after it ends: EST
def test_the_session_opens_at_0930_new_york_time_across_daylight_saving(tmp_path, day, utc_open):
    import datetime as dt

    env = live_env(tmp_path, TRADE_AFTER_OPEN_MINUTES="0")
    opening = dt.datetime.fromisoformat(f"{day}T{utc_open}:00+00:00")
    before = run({"now": (opening - dt.timedelta(minutes=1)).isoformat(), "dry_run": True}, env=env)
    assert before["status"] == "market_closed" and "09:30 New York time" in before["reason"]
    at_open = run({"now": opening.isoformat(), "dry_run": True}, env=env)
    # inside the session now: the daily cadence waits for its decision time instead of calling the market closed
    assert at_open["status"] == "no_change" and "decision time, 15:45" in at_open["reason"], at_open
    assert at_open["now"].startswith(f"{day}T09:30:00-0")


def test_kill_switch_makes_a_dry_run(tmp_path):
    summary = run({"now": SLOT}, env=live_env(tmp_path, TRADING_ENABLED="false"))
    assert summary["status"] == "dry_run" and summary["dry_run_reason"] == "TRADING_ENABLED=false"
    assert summary["orders"] and all(o["status"] == "dry_run" and not o["new"] for o in summary["orders"])
    assert paper_orders(tmp_path) == []
    # the same slot with the switch on trades exactly what the dry run showed
    traded = run({"now": SLOT}, env=live_env(tmp_path))
    assert traded["status"] == "traded"
    assert [(o["symbol"], o["side"], o["qty"]) for o in traded["orders"]] == \
           [(o["symbol"], o["side"], o["qty"]) for o in summary["orders"]]


def test_limits_reduce_and_skip_buys(tmp_path):
    free = run({"now": SLOT, "dry_run": True}, env=live_env(tmp_path / "free"))
    buys = [o for o in free["orders"] if o["side"] == "buy"]
    assert len(buys) >= 2
    capped = run({"now": SLOT}, env=live_env(tmp_path / "capped", MAX_ORDER_NOTIONAL="5000", MAX_POSITIONS="1"))
    assert len(capped["orders"]) == 1
    order = capped["orders"][0]
    assert order["symbol"] == buys[0]["symbol"] and order["qty"] * order["price"] <= 5000 < buys[0]["qty"] * order["price"]
    reasons = {(s["symbol"], s["action"]) for s in capped["skipped"]}
    assert (buys[0]["symbol"], "reduced") in reasons and (buys[1]["symbol"], "skipped") in reasons


def test_journal_to_s3_through_moto(tmp_path, monkeypatch):
    import boto3

    from _moto_server import moto_environment

    with moto_environment(monkeypatch):
        boto3.client("s3").create_bucket(Bucket="journal-bucket")
        summary = run({"now": "2022-07-04T15:45:00-04:00"},
                      env=live_env(tmp_path, JOURNAL="s3://journal-bucket/cycles"))
        assert summary["status"] == "market_closed"
        key = f"cycles/2022-07-04/{summary['cycle_id']}.json"
        assert summary["journal"] == f"s3://journal-bucket/{key}"
        body = json.loads(boto3.client("s3").get_object(Bucket="journal-bucket", Key=key)["Body"].read())
        assert body["status"] == "market_closed" and body["inputs"]["config"]["journal"].startswith("s3://")


def test_a_cycle_through_the_real_alpaca_broker_and_the_stub(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, SYMBOLS, fill=True)
        env = live_env(tmp_path, **stub.env())
        summary = run({}, env=env)  # no replay: the time is the broker's clock
        assert summary["status"] == "traded", summary
        assert summary["broker"] == "alpaca-paper" and summary["now"] == "2022-06-01T15:45:00-04:00"
        sent = stub.state.submitted()
        assert sorted(b["client_order_id"] for b in sent) == sorted(o["client_order_id"] for o in summary["orders"])
        assert all(b["type"] == "market" for b in sent)
        again = run({}, env=env)
        assert again["status"] == "no_change" and len(stub.state.submitted()) == len(sent)


def test_live_money_needs_trading_enabled_set_explicitly(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, SYMBOLS, fill=True)
        live_money = {**stub.env(), "APCA_PAPER": "false"}
        cautious = run({}, env=live_env(tmp_path, **live_money))
        assert cautious["status"] == "dry_run" and "TRADING_ENABLED=true" in cautious["dry_run_reason"]
        assert cautious["broker"] == "alpaca-live" and stub.state.submitted() == []
        meant = run({}, env=live_env(tmp_path, TRADING_ENABLED="true", **live_money))
        assert meant["status"] == "traded" and len(stub.state.submitted()) == len(cautious["orders"]) > 0


def test_stop_loss_and_take_profit_become_bracket_orders_on_alpaca(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, SYMBOLS, fill=False)
        env = live_env(tmp_path, STRATEGY_STOP_LOSS="0.02", STRATEGY_TAKE_PROFIT="0.4", **stub.env())
        summary = run({}, env=env)
        assert summary["status"] == "traded", summary
        for body, order in zip(stub.state.submitted(), summary["orders"]):
            assert body["order_class"] == "bracket" and body["side"] == "buy"
            assert float(body["stop_loss"]["stop_price"]) == pytest.approx(order["price"] * 0.98, abs=0.01)
            assert float(body["take_profit"]["limit_price"]) == pytest.approx(order["price"] * 1.4, abs=0.01)


def test_a_cycle_on_yfinance_data_through_the_yahoo_stub(tmp_path, monkeypatch):
    from _yahoo_stub import YahooStub

    stub = YahooStub().install(monkeypatch)
    env = live_env(tmp_path, MARKET_DATA="yfinance", PROPHETTREND_CACHE=str(tmp_path / "cache"))
    summary = run({"now": SLOT, "dry_run": True}, env=env)
    assert summary["status"] == "dry_run", summary
    assert summary["provenance"]["data"]["provider"] == "yfinance"
    assert summary["provenance"]["data"]["last_date"] == "2022-06-01"
    sample = run({"now": SLOT, "dry_run": True}, env=live_env(tmp_path / "sample"))
    assert [(o["symbol"], o["side"]) for o in summary["orders"]] == [(o["symbol"], o["side"]) for o in sample["orders"]]
    assert sum(stub.history_requests.values()) >= len(SYMBOLS)


def test_a_universe_symbol_without_data_is_refused_but_a_snapshot_member_is_skipped(tmp_path):
    # A symbol the user listed and the prices lack is refused before any order, as the backtest refuses it
    # (test_universe_checks); a member of the bundled S&P 500 snapshot without data (e.g. since delisted) is
    # skipped and named, and the rest of the book still trades.
    listed = run({"now": SLOT}, env=live_env(tmp_path / "listed", UNIVERSE=",".join(SYMBOLS + ["GONE"])))
    assert listed["status"] == "error" and listed["error"]["type"] == "config"
    assert "unknown symbol(s) GONE" in listed["error"]["message"] and paper_orders(tmp_path / "listed") == []
    snapshot = run({"now": SLOT}, env=live_env(tmp_path / "sp500", UNIVERSE="sp500"))
    assert snapshot["status"] == "traded", snapshot
    assert "MMM" in snapshot["provenance"]["unavailable_symbols"]
    universe = set(snapshot["provenance"]["universe"])
    assert universe - set(snapshot["provenance"]["unavailable_symbols"]) == universe & set(SampleProvider().data.symbols)
