"""A dry run only reads and reports (issue 16, item 6): at the paper broker and at Alpaca (the stub), the event's
``dry_run`` and ``TRADING_ENABLED=false`` cancel nothing, send nothing, and write no ledger, daybook or lease;
the journal gets its report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from _alpaca_stub import alpaca_stub
from _live_env import SLOT, live_env
from brokers.alpaca import AlpacaBroker
from brokers.base import OrderRequest
from brokers.paper import PaperBroker
from live.cycle import run
from marketdata.provider import SampleProvider

WIDE = {"UNIVERSE": "KO,PG,JNJ,PEP,MRK,LLY,UNH", "STRATEGY_TOP_N": "7"}


def state_files(home: Path) -> dict[str, str]:
    """Every file a cycle keeps, but the journal (which a dry run appends its report to), by content hash."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and p.name != "journal.jsonl"}


@pytest.mark.parametrize("how", ["event", "kill_switch"])
def test_a_dry_run_at_the_paper_broker_writes_no_ledger_daybook_or_lease(tmp_path, how):
    env = live_env(tmp_path, **WIDE)
    assert run({"now": "2022-04-01T15:45:00-04:00"}, env=env)["status"] == "traded"  # a ledger to leave alone
    before = state_files(tmp_path)
    orders_before = PaperBroker(tmp_path / "paper.sqlite", SampleProvider()).orders()
    event, settings = ({"now": SLOT, "dry_run": True}, env) if how == "event" else \
        ({"now": SLOT}, {**env, "TRADING_ENABLED": "false"})
    summary = run(event, env=settings)
    assert summary["status"] == "dry_run" and summary["orders"], summary  # it decided, and sent nothing
    assert {o["fate"] for o in summary["orders"]} == {"dry_run"}
    assert PaperBroker(tmp_path / "paper.sqlite", SampleProvider()).orders() == orders_before
    assert not (tmp_path / "decisions" / "prophet-trend" / "2022-06-01.json").exists()
    assert state_files(tmp_path) == before  # ledger, lease, daybook: byte for byte
    journal = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(journal) == 2 and '"status": "dry_run"' in journal[-1]


def test_a_dry_run_at_alpaca_cancels_no_stale_order(tmp_path):
    sample = SampleProvider().data.closes.loc["2022-06-01"]
    with alpaca_stub() as stub:
        stub.state.prices.update({s: float(sample[s]) for s in WIDE["UNIVERSE"].split(",")})
        broker = AlpacaBroker(stub.key_id, stub.secret, url=stub.url)
        stub.state.set_now("2022-06-01T10:00:00-04:00")
        ours = broker.submit(OrderRequest("LLY", "buy", 1, client_order_id="prophet-trend-20220601-s40-LLY-buy"))
        stub.state.set_now(SLOT)
        seen = len(stub.state.received)
        env = live_env(tmp_path, **WIDE, **stub.env())
        summary = run({"dry_run": True}, env=env)
        assert summary["status"] == "dry_run", summary
        assert stub.state.order(ours.id)["status"] in ("new", "accepted")  # still open: the dry run cancelled nothing
        writes = [(r.method, r.path) for r in stub.state.received[seen:] if r.method != "GET"]
        assert writes == []  # no DELETE, no POST: it only read
        assert "LLY" in {s["symbol"] for s in summary["skipped"]}
        assert list(tmp_path.rglob("ledger/*")) == [] and list(tmp_path.rglob("decisions/*")) == []
        assert list(tmp_path.rglob("lease/*")) == []
