"""Capital per strategy (issue 16, item 7): variants sharing one margin account each size their buys on
min(buying power, capital - own exposure), so together they never overdraw the account's cash, and each one's
positions are exactly its own fills. The same ``capital`` rule caps the backtest (``--capital``)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from _alpaca_stub import OPEN, alpaca_stub
from _live_env import live_env
from live.cycle import run
from live.ledger import open_ledger
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
UNIVERSE = "KO,PG,JNJ,PEP,MRK,LLY,UNH"
DAYS = [d.date() for d in SampleProvider().data.closes.loc["2022-06-01":"2022-06-14"].index][:10]


def replay_two_variants(tmp_path: Path, days=DAYS, **extra: str) -> tuple[list[float], object, dict]:
    """Both variants decide at 15:45 on each of 10 days on one 2x margin account of the Alpaca stub, as their two
    schedules fire together: each sizes while the other's orders are still open, and all fill after both ran."""
    closes = SampleProvider().data.closes
    cash_seen: list[float] = []
    with alpaca_stub() as stub:
        stub.state.multiplier = 2.0
        variants = {"pt-a": {"STRATEGY_BAND": "0.0"}, "pt-b": {"STRATEGY_BAND": "0.002", "STRATEGY_HISTORY": "50"}}
        for day in days:
            stub.state.set_now(f"{day}T15:45:00-04:00")
            stub.state.prices.update({s: float(closes.loc[str(day), s]) for s in UNIVERSE.split(",")})
            for name, params in variants.items():
                env = live_env(tmp_path, UNIVERSE=UNIVERSE, STRATEGY_NAME=name, **{"STRATEGY_TOP_N": "7", **params},
                               **extra, **stub.env())
                summary = run({}, env=env)
                assert summary["status"] in ("traded", "no_change"), summary
            for order in [o for o in stub.state.orders if o["status"] in OPEN and o["type"] == "market"]:
                stub.state.fill(order["id"])
            cash_seen.append(stub.state.cash)
        stub.state.set_now("2022-06-15T10:30:00-04:00")  # a morning cycle: each ledger takes in the last fills
        for name in variants:
            assert run({}, env=live_env(tmp_path, UNIVERSE=UNIVERSE, STRATEGY_NAME=name, **stub.env()))["status"] \
                == "no_change"
        ledgers = {name: open_ledger(str(tmp_path / "journal.jsonl"), name).quantities() for name in variants}
        return cash_seen, stub.state, ledgers


def fills_of(state, name: str) -> dict[str, int]:
    held: Counter = Counter()
    for o in state.orders:
        if o["client_order_id"].startswith(f"{name}-2022") and float(o["filled_qty"]) > 0:
            held[o["symbol"]] += int(float(o["filled_qty"])) * (1 if o["side"] == "buy" else -1)
    return {s: q for s, q in held.items() if q}


def test_two_variants_with_capital_on_one_margin_account_never_overdraw_it(tmp_path):
    cash_seen, state, ledgers = replay_two_variants(tmp_path, CAPITAL="48000")
    assert min(cash_seen) >= 0, cash_seen
    assert len(state.orders) >= 4  # both traded
    for name, quantities in ledgers.items():
        assert fills_of(state, name), name
        assert {s: q for s, q in quantities.items() if q} == fills_of(state, name)
    together = Counter(fills_of(state, "pt-a")) + Counter(fills_of(state, "pt-b"))
    assert {s: p["qty"] for s, p in state.positions.items() if p["qty"]} == dict(together)


def test_without_capital_the_same_variants_overdraw_the_margin_account(tmp_path):
    """The control: each variant sizing on the whole account drives its cash below zero (the issue's -$10,701)."""
    cash_seen, _, _ = replay_two_variants(tmp_path)
    assert min(cash_seen) < 0


def test_capital_caps_what_the_backtest_invests(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "backtests.run", "--symbols", "KO,PG,JNJ,PEP,MRK", "--start",
                           "2022-04-01", "--end", "2022-06-30", "--history", "60", "--lookback", "20",
                           "--capital", "20000", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((out / "equity.csv").open()))
    invested = [float(r["equity"]) - float(r["cash"]) for r in rows]
    assert invested and 15_000 < max(invested) < 20_000 * 1.15  # the capital, plus what its holdings gained
    assert 'capital = 20000.0' in (out / "config.toml").read_text()


EQUAL_WEIGHT = '''
from strategies import Strategy

class EqualWeight(Strategy):
    name = "equal"
    warmup_bars = 2
    def decide(self, closes, positions, cash):
        return {s: 0.95 / len(self.candidates) for s in self.candidates}
'''


def test_capital_counts_the_strategys_own_open_buys_not_yet_filled(tmp_path):
    """Orders still open at the broker spend capital too: the next decision must not spend it again."""
    path = tmp_path / "equal.py"
    path.write_text(EQUAL_WEIGHT)
    closes = SampleProvider().data.closes
    with alpaca_stub() as stub:  # market orders stay open: nothing fills between the two decisions
        for day, universe in (("2022-05-31", "KO"), ("2022-06-01", "KO,PG")):
            stub.state.set_now(f"{day}T15:45:00-04:00")
            stub.state.prices.update({s: float(closes.loc[day, s]) for s in ("KO", "PG")})
            env = {k: v for k, v in live_env(tmp_path / "state").items() if not k.startswith("STRATEGY_")}
            env.update(STRATEGY=f"{path}:EqualWeight", UNIVERSE=universe, CAPITAL="10000",
                       STALE_ORDER_MINUTES="100000", **stub.env())
            assert run({}, env=env)["status"] == "traded"
        committed = sum(float(o["qty"]) * stub.state.prices[o["symbol"]] for o in stub.state.orders)
        assert {o["symbol"] for o in stub.state.orders} == {"KO", "PG"}
        assert committed <= 10_000.0, committed  # PG was sized on what KO's open order left of the capital
