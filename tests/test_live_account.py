"""A ledger bound to its account (issue 16, item 2), and exact ownership of order ids (item 3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _live_env import SLOT, SYMBOLS, live_env, stub_at_slot
from brokers.base import BrokerOrder, BrokerPosition
from live.cycle import run
from live.ledger import open_ledger
from live.orders import client_order_id, is_ours, parse_order_id
from live.reconcile import reconcile
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc


def test_paper_first_then_live_with_the_same_journal_refuses_and_leaves_the_users_shares_alone(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as paper, alpaca_stub(key_id="AKLIVESTUBKEY0000002") as live:
        stub_at_slot(paper, SYMBOLS, fill=True)
        traded = run({}, env=live_env(tmp_path, **paper.env()))
        assert traded["status"] == "traded", traded
        bought = {o["symbol"]: o["qty"] for o in traded["orders"] if o["side"] == "buy"}
        assert bought

        # The live account: another id, and the user's own shares of the very names the paper ledger holds,
        # plus an order the user placed by hand.
        stub_at_slot(live, SYMBOLS, fill=True)
        day2 = SampleProvider().data.closes.loc["2022-06-02"]  # the next day: a decision is due again
        live.state.set_now("2022-06-02T15:45:00-04:00")
        live.state.prices.update({s: float(day2[s]) for s in SYMBOLS})
        live.state.account_id, live.state.account_number = "b7d1c2e3-0000-4000-8000-000000000002", "LIVE0002"
        for symbol in bought:
            live.state.set_position(symbol, 500, 40.0)
        with live.state.lock:
            mine = live.state._new_order({"symbol": "PG", "qty": 1, "side": "buy", "time_in_force": "day",
                                          "client_order_id": "prophet-trend-by-hand"}, order_class="",
                                         submitted_at="2022-06-01T13:00:00Z")
            live.state.orders.append(mine)
        live_env_ = live_env(tmp_path, **{**live.env(), "APCA_PAPER": "false", "TRADING_ENABLED": "true"})
        refused = run({}, env=live_env_)
        assert refused["status"] == "error" and refused["error"]["type"] == "ledger", refused
        message = refused["error"]["message"]
        assert "alpaca-paper account a3c6a5e6" in message and "alpaca-live account b7d1c2e3" in message
        assert "python -m live ledger new --journal" in message and "nothing traded" in message
        assert live.state.submitted() == [] and live.state.order(mine["id"])["status"] == "new"
        assert {s: p["qty"] for s, p in live.state.positions.items()} == {s: 500 for s in bought}

        # One command starts a new ledger; the old one is kept; the next cycle trades only its own book.
        journal = str(tmp_path / "journal.jsonl")
        done = subprocess.run([sys.executable, "-m", "live", "ledger", "new", "--journal", journal, "--strategy",
                               "prophet-trend"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0 and "kept at" in done.stdout, done.stderr
        assert len(list((tmp_path / "ledger").glob("prophet-trend.*.json"))) == 1
        fresh = run({}, env=live_env_)
        assert fresh["status"] == "traded" and fresh["decision"]["due"], fresh
        assert not [o for o in live.state.submitted() if o["side"] == "sell"]  # the user's shares: never sold
        assert fresh["ledger"]["positions"] == {} and fresh["ledger"]["foreign_positions"] == {s: 500 for s in bought}
        assert live.state.order(mine["id"])["status"] == "new"  # a look-alike id is not the bot's


def test_a_filled_entry_the_broker_does_not_know_is_an_error_never_a_position(tmp_path):
    from brokers.paper import PaperBroker
    from marketdata.provider import SampleProvider

    journal = str(tmp_path / "journal.jsonl")
    # an older ledger, not yet bound to an account, claims 300 KO that this broker never filled
    ledger = open_ledger(journal, "prophet-trend")
    ghost = client_order_id("prophet-trend", dt.date(2022, 5, 2), "KO", "buy")
    ledger.entries[ghost] = {"client_order_id": ghost, "id": "x", "symbol": "KO", "side": "buy", "qty": 300,
                             "filled_qty": 300, "filled_avg_price": 60.0, "status": "filled", "parent": None,
                             "bracket": False, "legs": []}
    ledger.save()
    broker = PaperBroker(tmp_path / "paper.sqlite", SampleProvider(), cash=100_000)
    with broker._write() as db:  # the account does hold KO (the user's, bought by hand)
        db.execute("INSERT INTO positions (symbol, qty, avg_price) VALUES ('KO', 300, 55.0)")
    summary = run({"now": SLOT}, env=live_env(tmp_path))
    assert summary["status"] == "error" and summary["error"]["type"] == "ledger", summary
    assert ghost in summary["error"]["message"] and "python -m live ledger new" in summary["error"]["message"]
    assert broker.orders() == [] and broker.positions()["KO"].qty == 300


def test_a_ledger_records_its_account_and_a_paper_broker_keeps_a_stable_id(tmp_path):
    from brokers.paper import PaperBroker
    from marketdata.provider import SampleProvider

    assert run({"now": SLOT}, env=live_env(tmp_path))["status"] == "traded"
    stored = json.loads((tmp_path / "ledger" / "prophet-trend.json").read_text())
    account = PaperBroker(tmp_path / "paper.sqlite", SampleProvider()).account().id
    assert stored["account"] == {"broker": "paper", "id": account} and account.startswith("paper-")
    assert all(e["verified"] for e in stored["orders"].values())
    other = tmp_path / "other"  # another paper file is another account
    assert PaperBroker(other / "paper.sqlite", SampleProvider()).account().id != account


# -- exact ownership --------------------------------------------------------------------------------------------

def test_an_id_is_ours_only_if_it_parses_exactly_with_its_check():
    day = dt.date(2022, 6, 1)
    ours = client_order_id("prophet-trend", day, "AAPL", "buy")
    assert is_ours("prophet-trend", ours) and is_ours("prophet-trend", ours, "AAPL", "buy")
    assert not is_ours("prophet-trend", ours, "AAPL", "sell") and not is_ours("prophet-trend", ours, "MSFT")
    for hand_typed in ("prophet-trend-foo", "prophet-trend-20220601-AAPL-buy", ours[:-1] + "0", ours + "x",
                       ours.replace("AAPL", "MSFT"), "x" + ours):
        assert not is_ours("prophet-trend", hand_typed), hand_typed
    # `pt` never claims the ids of a variant whose name starts like its ids
    variant = client_order_id("pt-20240101", dt.date(2024, 1, 2), "KO", "buy")
    assert parse_order_id(variant) is not None and not is_ours("pt", variant) and is_ours("pt-20240101", variant)
    # the longest name, slot and symbol fit Alpaca's 48 characters; a longer symbol is cut, checked in full
    longest = client_order_id("n" * 20, day, "GOOGLX", "sell", slot=390)
    assert len(longest) == 48 and is_ours("n" * 20, longest)
    cut = client_order_id("n" * 20, day, "ABCDEFGHIJ", "buy", slot=390)
    assert len(cut) == 48 and is_ours("n" * 20, cut, "ABCDEFGHIJ", "buy") and not is_ours("n" * 20, cut, "ABCDEFGHIZ")


def test_a_strategy_name_with_a_date_like_part_is_refused(tmp_path):
    summary = run({"now": SLOT}, env=live_env(tmp_path, STRATEGY_NAME="pt-20240101"))
    assert summary["status"] == "error" and summary["error"]["type"] in ("config", "strategy"), summary
    assert "8-digit" in summary["error"]["message"]


def test_a_users_look_alike_order_is_neither_cancelled_nor_recorded_and_pt_never_takes_a_variants_fills():
    old = dt.datetime(2022, 6, 1, 14, 0, tzinfo=UTC)
    variant_buy = client_order_id("pt-20240101", dt.date(2022, 6, 1), "KO", "buy")
    orders = [BrokerOrder("1", "prophet-trend-foo", "PG", "buy", 5, "accepted", old),
              BrokerOrder("2", "prophet-trend-20220601-JNJ-buy", "JNJ", "buy", 5, "accepted", old),
              BrokerOrder("3", variant_buy, "KO", "buy", 7, "filled", old, filled_qty=7, filled_avg_price=60.0)]

    class Broker:
        name, canceled = "paper", []

        def open_orders(self):
            return [o for o in orders if o.is_open]

        def orders_since(self, since):
            return orders

        def order_by_client_id(self, cid):
            return next((o for o in orders if o.client_order_id == cid), None)

        def cancel(self, order_id):
            self.canceled.append(order_id)

    broker = Broker()
    now = dt.datetime(2022, 6, 1, 19, 45, tzinfo=UTC)
    assert reconcile(broker, "prophet-trend", now, stale_minutes=30).canceled == [] and broker.canceled == []
    assert reconcile(broker, "pt", now, stale_minutes=30).canceled == []
    import tempfile

    for name in ("prophet-trend", "pt"):
        ledger = open_ledger(tempfile.mkdtemp() + "/journal.jsonl", name)
        ledger.bind("paper", "acct-1")
        ledger.sync(broker, now)
        assert ledger.entries == {}, (name, ledger.entries)
        view = ledger.against({"KO": BrokerPosition("KO", 7, 60.0), "PG": BrokerPosition("PG", 5, 140.0)})
        assert view.positions == {} and view.foreign == {"KO": 7, "PG": 5}
