"""The rulebook prices every order itself (issue 16, item 5): a Decision's declared price is never what a limit
is checked against, in either home."""

from __future__ import annotations

from _live_env import SLOT, live_env
from live.cycle import run
from marketdata.provider import SampleProvider
from strategies.base import Decision, OrderIntent
from strategies.rules import Rules, plan_orders

CHEAP_LLY = '''
from strategies import Strategy
from strategies.base import Decision, OrderIntent


class CheapLLY(Strategy):
    name = "cheap-lly"
    warmup_bars = 2

    def decide(self, closes, positions, cash):
        return Decision(orders=[OrderIntent("LLY", "buy", 200, 1.0, "declared at one dollar")])
'''


def test_plan_orders_checks_max_order_notional_at_the_last_price_not_the_declared_one():
    decision = Decision(orders=[OrderIntent("LLY", "buy", 200, 1.0, "mine")])
    planned, notes = plan_orders(decision, {}, 100_000.0, {"LLY": 307.41}, Rules(max_order_notional=25_000.0))
    (order,) = planned
    assert order.qty == 81 and order.intent.price == 307.41  # floor(25000 / 307.41)
    assert order.qty * order.intent.price <= 25_000.0
    assert notes[0].action == "reduced" and "max_order_notional" in notes[0].reason


def test_a_decision_ordering_200_lly_at_a_declared_dollar_is_capped_in_the_live_cycle(tmp_path):
    path = tmp_path / "cheap.py"
    path.write_text(CHEAP_LLY)
    env = {k: v for k, v in live_env(tmp_path / "state").items() if not k.startswith("STRATEGY_")}
    env.update(STRATEGY=f"{path}:CheapLLY", UNIVERSE="LLY,KO", MAX_ORDER_NOTIONAL="25000")
    summary = run({"now": SLOT}, env=env)
    assert summary["status"] == "traded", summary
    price = float(SampleProvider().data.closes.loc[SLOT[:10], "LLY"])
    (order,) = summary["orders"]
    assert order["symbol"] == "LLY" and order["price"] == price
    assert order["qty"] == int(25_000 // price) < 200
    assert order["filled_qty"] * order["filled_avg_price"] <= 25_000.0  # $61,482 was filled before
    assert any(s["symbol"] == "LLY" and s["action"] == "reduced" for s in summary["skipped"])
