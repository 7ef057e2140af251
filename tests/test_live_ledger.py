"""Each strategy trades only its own book: positions from its own fills, only its own orders and legs touched."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from _live_env import SYMBOLS, live_env
from brokers.base import BrokerOrder, BrokerPosition
from brokers.calendar import MarketCalendar
from live.cycle import run
from live.orders import is_ours
from live.reconcile import reconcile


def open_ledger(journal, strategy):
    from live.ledger import open_ledger as opened  # imported late, so the test module loads without the ledger

    return opened(journal, strategy)
from marketdata.provider import SampleProvider

UTC = dt.timezone.utc
STRATEGIES = {"prophet-trend": {"STRATEGY_TOP_N": "3"},
              "pt-variant": {"STRATEGY_NAME": "pt-variant", "STRATEGY_TOP_N": "2", "STRATEGY_LOOKBACK": "30"}}


def own_fills(stub_orders: list[dict], strategy: str) -> dict[str, int]:
    """What the broker filled for orders with this strategy's ids (and legs of its parents)."""
    legs = {i for o in stub_orders if is_ours(strategy, o["client_order_id"]) for i in o.get("_leg_ids", [])}
    qty: dict[str, int] = defaultdict(int)
    for o in stub_orders:
        if is_ours(strategy, o["client_order_id"]) or o["id"] in legs:
            qty[o["symbol"]] += (1 if o["side"] == "buy" else -1) * int(float(o["filled_qty"] or 0))
    return {s: q for s, q in qty.items() if q}


def test_two_strategies_share_an_account_with_a_user_and_touch_only_their_own(tmp_path):
    from _alpaca_stub import alpaca_stub

    closes = SampleProvider().data.closes
    days = [s.date for s in MarketCalendar().sessions(dt.date(2022, 6, 1), dt.date(2022, 6, 20))][:10]
    assert len(days) == 10
    with alpaca_stub() as stub:
        state = stub.state
        state.fill_market_orders = True
        state.set_now(f"{days[0]}T10:00:00-04:00")
        state.set_position("AAPL", 500, 140.0, price=float(closes.loc[str(days[0]), "AAPL"]))  # bought by hand
        with state.lock:  # the user's own GTC limit sell, placed on Alpaca's site (the stub takes only market orders)
            mine = state._new_order({"symbol": "AAPL", "qty": 100, "side": "sell", "time_in_force": "gtc",
                                     "client_order_id": "my-own-limit-sell"}, order_class="", type="limit",
                                    order_type="limit", limit_price="250", status="new")
            state.orders.append(mine)
        envs = {name: live_env(tmp_path, MAX_ORDER_NOTIONAL="5000", **extra, **stub.env())
                for name, extra in STRATEGIES.items()}
        summaries = defaultdict(list)
        for day in days:
            state.set_now(f"{day}T15:45:00-04:00")
            state.prices.update({s: float(closes.loc[str(day), s]) for s in SYMBOLS + ["AAPL"]})
            for name, env in envs.items():
                summary = run({}, env=env)
                assert summary["status"] in ("traded", "no_change"), summary
                assert (summary.get("ledger") or {}).get("shortfalls", []) == [], summary.get("ledger")
                summaries[name].append(summary)

        orders = state.orders
        assert state.order("my-own-limit-sell")["status"] == "new"  # the user's order: never cancelled
        assert not any(o["symbol"] == "AAPL" for o in orders if o["client_order_id"] != "my-own-limit-sell")
        fills = {name: own_fills(orders, name) for name in STRATEGIES}
        total: dict[str, int] = defaultdict(int)
        for name in STRATEGIES:
            assert fills[name], f"{name} never traded"
            for s, q in fills[name].items():
                total[s] += q
        # the account is exactly: the user's 500 AAPL plus the two strategies' own fills
        assert {s: p["qty"] for s, p in state.positions.items()} == {**total, "AAPL": 500}
        journal = str(tmp_path / "journal.jsonl")
        for name in STRATEGIES:
            assert open_ledger(journal, name).quantities() == fills[name]  # its positions are its own fills
        # both traded both ways over the window, side by side
        sides = {(name, o["side"]) for name, runs in summaries.items() for r in runs for o in r["orders"] if o["new"]}
        assert {side for _, side in sides} == {"buy", "sell"}
        last = {name: runs[-1]["ledger"] for name, runs in summaries.items()}
        assert last["prophet-trend"]["foreign_positions"]["AAPL"] == 500


class FakeBroker:
    def __init__(self, open_orders, by_client_id=None):
        self._open, self._by_id, self.canceled = open_orders, by_client_id or {}, []

    def open_orders(self):
        return self._open

    def order_by_client_id(self, cid):
        return self._by_id.get(cid)

    def cancel(self, order_id):
        self.canceled.append(order_id)


def _order(oid, cid, symbol, side, qty, status, kind="market", filled=0, price=None, legs=()):
    return BrokerOrder(oid, cid, symbol, side, qty, status, dt.datetime(2022, 6, 1, 19, 0, tzinfo=UTC), filled, price,
                       kind, tuple(legs))


def test_only_the_legs_of_our_own_parents_are_ours(tmp_path):
    take = _order("leg-1", "broker-uuid-1", "KO", "sell", 10, "new", "limit")
    stop = _order("leg-2", "broker-uuid-2", "KO", "sell", 10, "held", "stop")
    parent = _order("p-1", "pt-20220601s63-KO-b8525a9", "KO", "buy", 10, "filled", filled=10, price=60.0, legs=[take, stop])
    users = _order("u-1", "my-gtc-limit", "PG", "sell", 5, "new", "limit")  # looks just like a bracket leg
    ledger = open_ledger(str(tmp_path / "journal.jsonl"), "pt")
    ledger.record(parent)
    assert ledger.leg_ids() == {"leg-1", "leg-2"}
    broker = FakeBroker([take, stop, users])
    now = dt.datetime(2022, 6, 1, 19, 45, tzinfo=UTC)
    result = reconcile(broker, "pt", now, stale_minutes=30, our_legs=ledger.leg_ids())
    assert {s: [o.id for o in legs] for s, legs in result.exits.items()} == {"KO": ["leg-1", "leg-2"]}
    assert result.open_symbols == {"PG"} and broker.canceled == []  # the user's order: someone else's, kept


def test_a_filled_exit_leg_of_ours_reduces_our_position(tmp_path):
    take = _order("leg-1", "broker-uuid-1", "KO", "sell", 10, "new", "limit")
    parent = _order("p-1", "pt-20220601s63-KO-b8525a9", "KO", "buy", 10, "filled", filled=10, price=60.0, legs=[take])
    ledger = open_ledger(str(tmp_path / "journal.jsonl"), "pt")
    ledger.record(parent)
    assert ledger.quantities() == {"KO": 10}
    filled_take = _order("leg-1", "broker-uuid-1", "KO", "sell", 10, "filled", "limit", filled=10, price=66.0)
    later = _order("p-1", "pt-20220601s63-KO-b8525a9", "KO", "buy", 10, "filled", filled=10, price=60.0,
                   legs=[filled_take])
    ledger.sync(FakeBroker([], {"pt-20220601s63-KO-b8525a9": later}), dt.datetime(2022, 6, 2, 19, 45, tzinfo=UTC))
    assert ledger.quantities() == {} and ledger.new_fills == [
        {"symbol": "KO", "side": "sell", "qty": 10, "price": 66.0, "client_order_id": "broker-uuid-1"}]
    ledger.save()
    again = open_ledger(str(tmp_path / "journal.jsonl"), "pt")
    assert again.quantities() == {} and again.entries == ledger.entries  # survives the round trip


def test_the_strategy_never_sells_more_than_both_the_ledger_and_the_broker_hold(tmp_path):
    ledger = open_ledger(str(tmp_path / "journal.jsonl"), "pt")
    ledger.record(_order("1", "pt-20220601s63-KO-b8525a9", "KO", "buy", 10, "filled", filled=10, price=60.0))
    ledger.record(_order("2", "pt-20220601s63-PG-b9ace3c", "PG", "buy", 4, "filled", filled=4, price=140.0))
    view = ledger.against({"KO": BrokerPosition("KO", 6, 59.0), "PG": BrokerPosition("PG", 9, 141.0),
                           "AAPL": BrokerPosition("AAPL", 500, 150.0)})
    assert {s: p.qty for s, p in view.positions.items()} == {"KO": 6, "PG": 4}
    assert view.shortfalls == [{"symbol": "KO", "ledger": 10, "broker": 6}]
    assert view.foreign == {"AAPL": 500, "PG": 5}
    assert view.positions["PG"].avg_entry_price == 140.0  # our own cost, not the account's blend


def test_a_hand_bought_position_outside_the_universe_is_left_alone_on_the_paper_broker(tmp_path):
    from brokers.base import OrderRequest
    from brokers.paper import PaperBroker

    env = live_env(tmp_path)
    broker = PaperBroker(tmp_path / "paper.sqlite", SampleProvider(),
                         now=dt.datetime.fromisoformat("2022-06-01T10:00:00-04:00"))
    broker.submit(OrderRequest("AAPL", "buy", 50, client_order_id="bought-by-hand"))
    summary = run({"now": "2022-06-01T15:45:00-04:00"}, env=env)
    assert summary["status"] == "traded"
    assert "AAPL" not in {o["symbol"] for o in summary["orders"]} and "AAPL" not in summary["signals"]
    assert broker.positions()["AAPL"].qty == 50
    assert summary["ledger"]["foreign_positions"] == {"AAPL": 50}
    record = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert record["inputs"]["broker_positions"]["AAPL"]["qty"] == 50 and "AAPL" not in record["inputs"]["positions"]


def test_bracket_legs_of_our_parents_are_cancelled_before_we_sell_through_the_stub(tmp_path):
    from _alpaca_stub import alpaca_stub
    from brokers.alpaca import AlpacaBroker
    from brokers.base import OrderRequest

    with alpaca_stub() as stub:
        stub.state.set_now("2022-06-01T10:00:00-04:00")
        stub.state.prices["KO"] = 60.0
        probe = AlpacaBroker(stub.key_id, stub.secret, url=stub.url).submit(
            OrderRequest("KO", "buy", 1, "probe-bracket", stop_loss_price=50.0, take_profit_price=70.0))
        if not probe.legs:
            pytest.skip("brokers.alpaca does not report bracket legs yet (the brokers engineer's change)")
        ledger = open_ledger(str(tmp_path / "journal.jsonl"), "probe")
        ledger.record(probe)
        assert ledger.leg_ids() == {leg.id for leg in probe.legs}
