"""Strict events (issue 16, item 4): any key but the accepted ones is an error, nothing trades, and the error
lists the accepted keys; what the deployed schedules, ``deploy invoke`` and a plain console test send still runs."""

from __future__ import annotations

import json

import pytest

from _live_env import SLOT, live_env
from brokers.paper import PaperBroker
from deploy.schedule import SCHEDULE_INPUT
from live.cycle import run
from marketdata.provider import SampleProvider


def paper_orders(state_dir):
    path = state_dir / "paper.sqlite"
    return PaperBroker(path, SampleProvider()).orders() if path.exists() else []


@pytest.mark.parametrize("key", ["dry run", "dry_run ", "Dry_Run", "dry.run", "DRY-RUN", "options", "dry_runs"])
def test_an_unknown_event_key_trades_nothing_and_names_the_accepted_keys(tmp_path, key):
    value = {"dry_run": True} if key == "options" else True  # nesting: {"options": {"dry_run": true}}
    summary = run({"now": SLOT, key: value}, env=live_env(tmp_path))
    assert summary["status"] == "error" and summary["error"]["type"] == "input", summary
    assert f"event key {key!r} is not understood" in summary["error"]["message"]
    assert summary["error"]["message"].endswith("accepted keys: dry_run, now, source")
    assert summary["orders"] == [] and paper_orders(tmp_path) == []
    journaled = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert journaled["cycle_id"] == summary["cycle_id"] and journaled["status"] == "error"


def test_the_lambda_console_sample_event_is_refused(tmp_path):
    summary = run({"key1": "value1", "key2": "value2", "key3": "value3"}, env=live_env(tmp_path))
    assert summary["status"] == "error" and "'key1' is not understood" in summary["error"]["message"]


@pytest.mark.parametrize("event", [json.loads(SCHEDULE_INPUT), {}, None, {"source": "console", "dry_run": True}])
def test_what_the_schedules_and_deploy_invoke_send_is_accepted(tmp_path, event):
    """The deployed schedules' Input (deploy.schedule.SCHEDULE_INPUT), ``deploy invoke``'s default ``{}``."""
    summary = run(event, env=live_env(tmp_path, TRADING_ENABLED="false"))  # host clock: whatever the market does
    assert summary["status"] != "error", summary


def test_a_source_that_is_not_text_is_refused(tmp_path):
    summary = run({"source": {"nested": 1}}, env=live_env(tmp_path))
    assert summary["status"] == "error" and "event source must be a string" in summary["error"]["message"]
