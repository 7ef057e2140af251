"""A run pins its user strategy file: the run folder keeps the bytes that ran, config.toml their sha256.

``--config`` runs the pinned copy (so editing the original changes nothing) and refuses a copy that was changed;
``deploy up --config`` ships the pinned copy, the function checks its hash at every cycle, and ``deploy status``
shows it. Through the real entry points: ``backtests.run``, ``python lambda_function.py``, ``python -m deploy``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from _live_env import SLOT
from backtests.run import cli

ROOT = Path(__file__).resolve().parents[1]
TOP_TWO = '''from strategies import Strategy


class TopTwo(Strategy):
    name = "top-two"
    warmup_bars = 6

    def decide(self, closes, positions, cash):
        ret = (closes.iloc[-1] / closes.iloc[-6] - 1).dropna().sort_values(ascending=False)
        return {s: WEIGHT for s in ret.index[:2]}


WEIGHT = 0.45
'''
WINDOW = ["--symbols", "AAPL,KO,PG,MSFT", "--start", "2022-09-01", "--quiet", "--no-plot"]


@pytest.fixture()
def pinned_run(tmp_path):
    user = tmp_path / "mine" / "top_two.py"
    user.parent.mkdir()
    user.write_text(TOP_TWO)
    out = tmp_path / "run"
    assert cli(["--strategy", f"{user}:TopTwo", *WINDOW, "--out", str(out)]) == 0
    return user, out


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_the_run_folder_keeps_the_file_that_ran_and_its_hash(pinned_run):
    user, out = pinned_run
    config = tomllib.loads((out / "config.toml").read_text())
    assert (out / "strategy.py").read_bytes() == user.read_bytes()
    assert config["strategy"] == "strategy.py:TopTwo"  # the copy, next to the config
    assert config["strategy_sha256"] == _sha(user.read_bytes())


def test_config_runs_the_pinned_copy_byte_for_byte_after_the_original_is_edited(pinned_run, tmp_path):
    user, out = pinned_run
    user.write_text(TOP_TWO.replace("WEIGHT = 0.45", "WEIGHT = 0.30"))  # the original moves on
    edited = tmp_path / "edited"
    assert cli(["--strategy", f"{user}:TopTwo", *WINDOW, "--out", str(edited)]) == 0
    assert (edited / "trades.csv").read_bytes() != (out / "trades.csv").read_bytes()  # the edit matters
    again = tmp_path / "again"
    assert cli(["--config", str(out / "config.toml"), "--quiet", "--no-plot", "--out", str(again)]) == 0
    for name in ("trades.csv", "equity.csv", "positions.csv", "config.toml", "strategy.py"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_config_refuses_a_pinned_copy_that_was_changed(pinned_run, tmp_path, capsys):
    _, out = pinned_run
    copy = out / "strategy.py"
    copy.write_text(copy.read_text().replace("WEIGHT = 0.45", "WEIGHT = 0.90"))
    with pytest.raises(SystemExit) as exc:
        cli(["--config", str(out / "config.toml"), "--quiet", "--no-plot", "--out", str(tmp_path / "again")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "has changed since it was pinned" in err and not (tmp_path / "again").exists()


def test_a_hand_written_config_naming_a_file_by_hash_refuses_an_edited_file(tmp_path, capsys):
    user = tmp_path / "top_two.py"
    user.write_text(TOP_TWO)
    config = tmp_path / "c.toml"
    config.write_text(f'strategy = "top_two.py:TopTwo"\nstrategy_sha256 = "{_sha(user.read_bytes())}"\n')
    assert cli(["--config", str(config), *WINDOW, "--out", str(tmp_path / "a")]) == 0
    user.write_text(TOP_TWO + "\n# edited\n")
    with pytest.raises(SystemExit) as exc:
        cli(["--config", str(config), *WINDOW, "--out", str(tmp_path / "b")])
    assert exc.value.code == 2 and "has changed since it was pinned" in capsys.readouterr().err


def _lambda(folder: Path, state: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY", "UNIVERSE"))}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{folder}", STATE_DIR=str(state), STRATEGY_CONFIG=str(folder / "strategy_config.toml"),
               UNIVERSE="AAPL,KO,PG,MSFT", LOG_LEVEL="WARNING", MAX_POSITIONS="none", MAX_ORDER_NOTIONAL="none")
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", SLOT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return done


def test_deploy_packs_the_pinned_copy_and_the_function_checks_its_hash(pinned_run, tmp_path):
    from deploy.strategy_bundle import CONFIG_NAME, strategy_bundle

    user, out = pinned_run
    ran = user.read_bytes()
    user.write_text(TOP_TWO.replace("WEIGHT = 0.45", "WEIGHT = 0.30"))  # edited after the backtest
    bundle = strategy_bundle(out / "config.toml", None, None, None)
    assert bundle.files["user_strategies/strategy.py"] == ran  # what was backtested, not the file as it is now
    assert bundle.strategy_sha256 == _sha(ran)
    packed = tomllib.loads(bundle.files[CONFIG_NAME].decode())
    assert packed["strategy"] == "user_strategies.strategy:TopTwo" and packed["strategy_sha256"] == _sha(ran)
    folder = tmp_path / "unzipped"
    for name, content in bundle.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    done = _lambda(folder, tmp_path / "state-a")
    assert done.returncode == 0, done.stderr[-2000:]
    traded = json.loads(done.stdout)
    assert traded["status"] == "traded" and traded["strategy"] == "top-two" and traded["orders"]
    shipped = folder / "user_strategies" / "strategy.py"
    shipped.write_text(shipped.read_text().replace("WEIGHT = 0.45", "WEIGHT = 0.90"))
    refused = _lambda(folder, tmp_path / "state-b")
    assert refused.returncode == 2 and "has changed since it was pinned" in refused.stderr
    assert not (tmp_path / "state-b" / "paper.sqlite").exists()  # refused before the broker was opened


def test_deploy_refuses_a_run_whose_pinned_copy_was_changed(pinned_run):
    _, out = pinned_run
    (out / "strategy.py").write_text(TOP_TWO + "\n# edited\n")
    done = subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "us-east-1", "--config",
                           str(out / "config.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "has changed since it was pinned" in done.stderr, done.stderr


def test_deploy_status_shows_the_deployed_strategys_hash(pinned_run, tmp_path, monkeypatch, capsys):
    from moto.s3.models import FakeBucket

    import deploy.__main__ as deploy_cli
    from _moto_server import moto_environment
    from deploy.function_zip import build_function_zip
    from deploy.strategy_bundle import strategy_bundle
    from deploy.zipfiles import write_zip
    from test_deploy_aws import _tls_aware_permission  # moto and the TLS-only bucket policy (see there)

    user, out = pinned_run
    bundle = strategy_bundle(out / "config.toml", None, None, None)
    function_zip, _ = build_function_zip(tmp_path / "function.zip", extra=bundle.files)
    (tmp_path / "layer" / "python" / "fakepkg").mkdir(parents=True)
    (tmp_path / "layer" / "python" / "fakepkg" / "__init__.py").write_text("")
    layer_zip = write_zip(tmp_path / "layer", tmp_path / "layer.zip")
    monkeypatch.setenv("APCA_API_KEY_ID", "PKTEST")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    monkeypatch.setattr(FakeBucket, "get_permission", _tls_aware_permission)
    with moto_environment(monkeypatch) as url:
        common = ["--function-name", "pt-pin", "--region", "us-east-1", "--endpoint-url", url]
        assert deploy_cli.run(["up", "--config", str(out / "config.toml"), "--function-zip", str(function_zip),
                               "--layer-zip", str(layer_zip), *common]) == 0
        capsys.readouterr()
        assert deploy_cli.run(["status", *common]) == 0
        line, = [line for line in capsys.readouterr().out.splitlines() if line.startswith("strategy ")]
        assert line.split()[-1] == _sha(user.read_bytes()) == bundle.strategy_sha256
        assert deploy_cli.run(["status", "--json", *common]) == 0
        assert json.loads(capsys.readouterr().out)["function"]["StrategySha256"] == bundle.strategy_sha256
