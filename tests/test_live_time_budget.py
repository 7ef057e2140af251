"""A time budget for strategy code (issue 16, item 9): a decide() that never returns, a strategy calling
sys.exit() in decide(), and a strategy file that raises on import are each journaled as a strategy error, the
lease is released, the metric line is printed, and the command line exits non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from _live_env import SLOT, live_env
from lambda_function import CycleFailed, lambda_handler
from live.cycle import run

ROOT = Path(__file__).resolve().parents[1]

STRATEGIES = '''
import sys, time
from strategies import Strategy

class Hang(Strategy):
    name = "hang"
    warmup_bars = 2
    def decide(self, closes, positions, cash):
        while True:
            try:
                time.sleep(3600)
            except Exception:  # a careless strategy that swallows errors is stopped all the same
                pass

class Exits(Strategy):
    name = "exits"
    warmup_bars = 2
    def decide(self, closes, positions, cash):
        sys.exit(0)
'''


def strategy_env(tmp_path: Path, spec: str, **extra: str) -> dict[str, str]:
    path = tmp_path / "user_strategies.py"
    path.write_text(STRATEGIES)
    env = {k: v for k, v in live_env(tmp_path / "state").items() if not k.startswith("STRATEGY_")}
    env.update(STRATEGY=f"{path}:{spec}" if ":" not in spec else spec, **extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY", "BROKER"))}
    return subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT, *args], cwd=ROOT,
                          env={**base, **env, "LOG_LEVEL": "INFO"}, capture_output=True, text=True, timeout=120)


def journal(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "state" / "journal.jsonl").read_text().splitlines()]


def metric_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if '"cycle_metrics"' in line]


@pytest.mark.parametrize("spec, message", [("Hang", "decide() ran past its time budget of 1 s"),
                                           ("Exits", "decide() called sys.exit(0)")])
def test_the_cli_journals_a_hanging_or_exiting_decide_and_exits_1(tmp_path, spec, message):
    env = strategy_env(tmp_path, spec, STRATEGY_TIMEOUT_SECONDS="1")
    done = cli(env)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "error" and summary["error"] == {"type": "strategy", "message": message}
    (record,) = journal(tmp_path)
    assert record["cycle_id"] == summary["cycle_id"] and record["error"]["type"] == "strategy"
    (metric,) = metric_lines(done.stderr)
    assert metric["CycleErrors"] == 1 and metric["status"] == "error"
    again = cli(env)  # the lease was released: the next cycle is not 'busy'
    assert json.loads(again.stdout)["status"] == "error", again.stderr


def test_a_strategy_file_that_raises_on_import_is_journaled_as_a_strategy_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('missing dependency')\n")
    env = strategy_env(tmp_path, f"{broken}:Broken")
    done = cli(env)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert summary["error"]["type"] == "strategy" and "missing dependency" in summary["error"]["message"]
    (record,) = journal(tmp_path)
    assert record["status"] == "error" and record["error"]["type"] == "strategy"
    assert metric_lines(done.stderr)[0]["CycleErrors"] == 1


def test_a_strategy_file_calling_sys_exit_on_import_is_journaled(tmp_path):
    quits = tmp_path / "quits.py"
    quits.write_text("import sys\nsys.exit(0)\n")
    summary = run({"now": SLOT}, env=strategy_env(tmp_path, f"{quits}:Quits"))
    assert summary["status"] == "error" and summary["error"]["type"] == "strategy", summary
    assert "sys.exit(0)" in summary["error"]["message"] and journal(tmp_path)[0]["cycle_id"] == summary["cycle_id"]


def test_in_lambda_decide_gets_the_remaining_time_less_a_margin(tmp_path, monkeypatch):
    class Context:  # 33 s left: 30 s are kept for submitting and journaling, decide() gets what remains of 3 s
        def get_remaining_time_in_millis(self):
            return 33_000

    for key, value in strategy_env(tmp_path, "Hang").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(CycleFailed) as failed:
        lambda_handler({"now": SLOT}, Context())
    error = failed.value.summary["error"]
    assert error["type"] == "strategy" and error["message"].startswith("decide() ran past its time budget of "), error
    assert float(error["message"].split(" of ")[1].split()[0]) < 3  # not the local default of 600 s
    assert failed.value.summary["seconds"] < 20
    assert journal(tmp_path)[-1]["error"]["type"] == "strategy"


def test_a_cycle_run_from_a_worker_thread_is_stopped_too(tmp_path):
    results: list[dict] = []
    env = strategy_env(tmp_path, "Hang", STRATEGY_TIMEOUT_SECONDS="1")
    worker = threading.Thread(target=lambda: results.append(run({"now": SLOT}, env=env)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and results[0]["error"]["type"] == "strategy", results


def test_an_alarm_that_fires_as_decide_returns_is_an_overrun_not_an_escape(monkeypatch):
    """The timer may fire after decide() returned and before it is cleared: that is an overrun the cycle journals
    (a StrategyError), never the timer's own BaseException escaping past the cycle's error handling."""
    import signal

    from live import time_budget
    from strategies.base import StrategyError

    real = signal.setitimer
    fired = []

    def setitimer(which, seconds, interval=0.0):
        if seconds == 0 and not fired:  # the first clearing: the alarm arrives just before it takes effect
            fired.append(True)
            raise time_budget._Overrun()
        return real(which, seconds, interval)

    monkeypatch.setattr(time_budget.signal, "setitimer", setitimer)
    with pytest.raises(StrategyError, match="time budget"):
        time_budget.call_with_budget(lambda: {"AAA": 0.5}, seconds=5.0)
    assert fired and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
