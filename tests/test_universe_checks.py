"""An empty universe is an error in every home, and a listed symbol the prices lack is refused before any order.

Each home through its real entry point: ``python -m backtests.run``, the live cycle (``live.cycle.run``, which
``lambda_function.py`` calls) and ``python -m deploy up --dry-run``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _live_env import SLOT, live_env
from backtests.run import cli
from brokers.paper import PaperBroker
from live.cycle import run
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--quiet", "--no-plot", "--top-n", "2", "--history", "30", "--lookback", "5", "--refit-every", "10",
         "--start", "2022-12-01"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("symbols", ["", " ", ",", " , "])
def test_backtest_refuses_empty_symbols(symbols, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        cli(QUICK + ["--symbols", symbols, "--out", str(out)])
    assert exc.value.code == 2 and "names no symbol" in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("text, expected", [('universe = []\n', "universe = [] names no symbol"),
                                            ('[backtest]\nsymbols = []\n', "backtest.symbols names no symbol")])
def test_backtest_refuses_an_empty_universe_in_a_config(text, expected, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('strategy = "ma-crossover"\n' + text)
    with pytest.raises(SystemExit) as exc:
        cli(QUICK + ["--config", str(config), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and expected in one_error_line(capsys)


def test_sweep_refuses_empty_symbols(tmp_path, capsys):
    from backtests.sweep import cli as sweep

    with pytest.raises(SystemExit) as exc:
        sweep(["--symbols", "", "--grid", "band=0.01", "--train", "40", "--test", "20", "--out", str(tmp_path / "s")])
    assert exc.value.code == 2 and "names no symbol" in one_error_line(capsys)


def _orders(state_dir: Path):
    path = state_dir / "paper.sqlite"
    return PaperBroker(path, SampleProvider()).orders() if path.exists() else []


@pytest.mark.parametrize("universe, expected", [
    ("", "UNIVERSE is set but names no symbol"),
    (" , ", "UNIVERSE is set but names no symbol"),
    ("KO,A/B", "'A/B' cannot be a ticker symbol"),
    ("KO,PG,NOPE", "UNIVERSE: unknown symbol(s) NOPE: sample has no prices"),
])
def test_live_cycle_refuses_the_universe_at_the_configuration_check(universe, expected, tmp_path):
    summary = run({"now": SLOT}, env=live_env(tmp_path, UNIVERSE=universe))
    assert summary["status"] == "error" and summary["error"]["type"] == "config", summary
    assert expected in summary["error"]["message"]
    assert summary["orders"] == [] and _orders(tmp_path) == []
    assert "broker" not in summary["provenance"]  # refused before the broker was contacted


def test_live_cycle_refuses_an_empty_or_unknown_universe_from_its_config(tmp_path):
    config = tmp_path / "c.toml"
    env = {k: v for k, v in live_env(tmp_path).items() if k != "UNIVERSE"} | {"STRATEGY_CONFIG": str(config)}
    config.write_text("universe = []\n")
    empty = run({"now": SLOT}, env=env)
    assert empty["status"] == "error" and "universe = [] names no symbol" in empty["error"]["message"]
    config.write_text('universe = ["KO", "NOPE"]\n')
    unknown = run({"now": SLOT}, env=env)
    assert unknown["status"] == "error" and "the config's universe: unknown symbol(s) NOPE" in unknown["error"]["message"]
    assert _orders(tmp_path) == []


def test_lambda_cli_exits_non_zero_on_an_empty_universe(tmp_path):
    env = {k: v for k, v in live_env(tmp_path).items()} | {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                          "UNIVERSE": ""}
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "UNIVERSE is set but names no symbol" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def _deploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "us-east-1", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (["--env", "UNIVERSE="], "UNIVERSE is set but names no symbol"),
    (["--env", "UNIVERSE=KO,A/B"], "'A/B' cannot be a ticker symbol"),
    (["--market-data", "sample", "--env", "UNIVERSE=KO,NOPE"], "UNIVERSE: unknown symbol(s) NOPE"),
])
def test_deploy_up_refuses_the_universe_the_function_would_refuse(args, expected):
    done = _deploy(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and expected in done.stderr and "Traceback" not in done.stderr
    assert "plan" not in done.stdout


def test_deploy_up_refuses_an_unknown_symbol_in_the_packed_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('universe = ["KO", "NOPE"]\n')
    done = _deploy("--market-data", "sample", "--config", str(config))
    assert done.returncode == 2 and "the config's universe: unknown symbol(s) NOPE" in done.stderr
    config.write_text('universe = ["KO", "PG"]\n')
    fine = _deploy("--market-data", "sample", "--config", str(config))
    assert fine.returncode == 0 and "plan (dry run" in fine.stdout, fine.stderr


def test_live_cycle_on_yfinance_refuses_a_listed_symbol_yahoo_does_not_know(tmp_path, monkeypatch):
    from _yahoo_stub import YahooStub

    YahooStub().install(monkeypatch)
    env = live_env(tmp_path, MARKET_DATA="yfinance", PROPHETTREND_CACHE=str(tmp_path / "cache"),
                   UNIVERSE="KO,PG,NOPE")
    summary = run({"now": SLOT}, env=env)
    assert summary["status"] == "error" and summary["error"]["type"] == "config", summary
    assert "UNIVERSE: unknown symbol(s) NOPE" in summary["error"]["message"]
    assert summary["orders"] == [] and _orders(tmp_path) == []
    fine = run({"now": SLOT, "dry_run": True}, env={**env, "UNIVERSE": "KO,PG", "STATE_DIR": str(tmp_path / "b")})
    assert fine["status"] == "dry_run", fine
