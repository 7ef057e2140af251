"""Operating the deployed bot through ``python -m deploy``: fail fast, reuse what was built, pause and resume,
paper to live on purpose, and a plan that shows the values (moto's server on 127.0.0.1, the real boto3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.artifacts import fingerprint, record_layer
from deploy.build import BuildOptions
from deploy.config import DeployConfig
from deploy.function_zip import function_manifest
from deploy.pause import set_paused
from deploy.status import render, status
from deploy.up import up
from deploy.zipfiles import write_zip
from tests._moto_server import FAKE_AWS_ENV
from tests.test_deploy_aws import KEY_ID, SECRET, artifacts, clients, endpoint  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def _no_aws_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS setting or file (and no instance metadata to ask)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "APCA_"))}
    env.update({"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
                "AWS_EC2_METADATA_DISABLED": "true", **extra})
    return env


def _deploy(*args: str, env: dict[str, str], stdin=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL, timeout=timeout)


def test_up_without_credentials_or_region_fails_in_one_line_within_seconds_and_builds_nothing(tmp_path):
    out = tmp_path / "build"
    t0 = time.monotonic()
    r = _deploy("up", "--region", "us-east-1", "--out", str(out), "--endpoint-url", "http://127.0.0.1:9",
                env=_no_aws_env())
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: no AWS credentials found") and len(r.stderr.strip().splitlines()) == 1
    assert elapsed < 10, elapsed
    assert not out.exists()  # nothing built: not even the function zip
    r = _deploy("up", "--out", str(out), env=_no_aws_env(AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no AWS region") and not out.exists()


def test_access_check_names_the_account_on_moto(endpoint):  # noqa: F811
    from deploy.preflight import check_access

    who = check_access(DeployConfig(region="us-east-1", endpoint_url=endpoint))
    assert who.account == "123456789012" and who.region == "us-east-1" and who.arn.startswith("arn:aws:")


def _fake_layer(out: Path, opts: BuildOptions, content: str = "VERSION = 1\n") -> Path:
    root = out / "stage"
    (root / "python" / "fakepkg").mkdir(parents=True, exist_ok=True)
    (root / "python" / "fakepkg" / "__init__.py").write_text(content)
    out.mkdir(parents=True, exist_ok=True)
    return write_zip(root, opts.layer_zip)


def _in_process(capsys, *args: str) -> str:
    """``python -m deploy ARGS`` in this process (cheaper than a subprocess): its stdout, after exit 0."""
    from deploy.__main__ import run

    capsys.readouterr()
    assert run(list(args)) == 0
    return capsys.readouterr().out


def test_up_follows_and_reuses_the_built_layer_and_builds_only_the_function(endpoint, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "build"
    opts = BuildOptions(out_dir=out, arch="arm64", compile_bytecode=True)
    layer = _fake_layer(out, opts)
    record_layer(layer, fingerprint(opts, function_manifest().third_party))  # what `deploy build` writes
    env = _no_aws_env(**FAKE_AWS_ENV, APCA_API_KEY_ID=KEY_ID, APCA_API_SECRET_KEY=SECRET)

    plan = _deploy("up", "--dry-run", "--out", str(out), env=env)
    assert plan.returncode == 0, plan.stderr
    assert f"--arch arm64 --compile: as {layer} was built" in plan.stdout
    assert f"{layer} reused (python3.12 arm64, compiled" in plan.stdout and "arm64, lambda_function" in plan.stdout
    # asked for something else: the plan says what it will build, and why
    other = _in_process(capsys, "up", "--dry-run", "--out", str(out), "--no-compile")
    assert f"{out}/layer-py3.12-arm64.zip to be built (python3.12 arm64, not compiled" in other
    assert "was built with other --compile" in other

    r = _deploy("up", "--function-name", "pt-reuse", "--endpoint-url", endpoint, "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "aws         account 123456789012" in r.stdout and f"{layer} reused" in r.stdout
    assert "building the layer" not in r.stderr and (out / "function.zip").is_file()
    conf = clients(endpoint)["lambda"].get_function_configuration(FunctionName="pt-reuse")
    assert conf["Architectures"] == ["arm64"]
    layers = clients(endpoint)["lambda"].list_layer_versions(LayerName="pt-reuse-deps")["LayerVersions"]
    assert layers[0]["Description"].endswith(json.loads(Path(f"{layer}.json").read_text())["sha256"])
    # a changed zip is no longer what was recorded: it would be rebuilt
    _fake_layer(out, opts, "VERSION = 2\n")
    changed = _in_process(capsys, "up", "--dry-run", "--out", str(out), "--arch", "arm64", "--compile")
    assert "changed since it was built" in changed


def test_pause_and_resume_switch_the_schedules_only(endpoint, artifacts, monkeypatch):  # noqa: F811
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    cfg = DeployConfig(function_name="pt-pause", region="us-east-1", endpoint_url=endpoint)
    up(cfg, artifacts)
    c = clients(endpoint)
    states = lambda: sorted(c["scheduler"].get_schedule(Name=s["Name"], GroupName="pt-pause")["State"]  # noqa: E731
                            for s in c["scheduler"].list_schedules(GroupName="pt-pause")["Schedules"])
    before = c["lambda"].get_function_configuration(FunctionName="pt-pause")
    alarms = lambda: sorted(a["AlarmName"] for a in c["cloudwatch"].describe_alarms(  # noqa: E731
        AlarmNamePrefix="pt-pause")["MetricAlarms"])
    alarms_before = alarms()
    expression = c["scheduler"].get_schedule(Name="pt-pause-0", GroupName="pt-pause")["ScheduleExpression"]
    steps = set_paused(cfg, paused=True)
    assert [s.action for s in steps] == ["paused", "paused"] and states() == ["DISABLED", "DISABLED"]
    after = c["lambda"].get_function_configuration(FunctionName="pt-pause")
    assert after["CodeSha256"] == before["CodeSha256"] and after["Environment"] == before["Environment"]
    assert len(alarms_before) >= 2 and alarms() == alarms_before  # the alarms stay
    schedule = c["scheduler"].get_schedule(Name="pt-pause-0", GroupName="pt-pause")
    assert schedule["ScheduleExpression"] == expression  # only the state changed
    assert schedule["Target"]["Arn"] == after["FunctionArn"]
    state = status(cfg)
    assert state["paused"] is True and "paused      yes" in render(state)
    assert [s.action for s in set_paused(cfg, paused=True)] == ["unchanged", "unchanged"]
    # a new `up` keeps a paused bot paused
    again = up(cfg, artifacts)
    assert [s.action for s in again if s.resource == "schedule"] == ["unchanged", "unchanged"]
    assert states() == ["DISABLED", "DISABLED"]
    assert [s.action for s in set_paused(cfg, paused=False)] == ["resumed", "resumed"]
    assert states() == ["ENABLED", "ENABLED"] and status(cfg)["paused"] is False

    env = _no_aws_env(**FAKE_AWS_ENV)
    r = _deploy("pause", "--function-name", "pt-pause", "--endpoint-url", endpoint, env=env)
    assert r.returncode == 0 and "schedule    paused    pt-pause-0" in r.stdout, r.stderr
    r = _deploy("pause", "--function-name", "pt-nothing", "--endpoint-url", endpoint, env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: no schedules of pt-nothing to pause")


def test_live_needs_a_confirmation_and_gets_its_own_journal(endpoint, artifacts, capsys, monkeypatch):  # noqa: F811
    env = _no_aws_env(**FAKE_AWS_ENV, APCA_API_KEY_ID=KEY_ID, APCA_API_SECRET_KEY=SECRET)
    zips = ["--function-zip", str(artifacts.function_zip), "--layer-zip", str(artifacts.layer_zip)]
    common = ["--function-name", "pt-live", "--endpoint-url", endpoint, *zips]
    plan = _deploy("up", "--dry-run", "--live", *common, env=env)
    assert plan.returncode == 0, plan.stderr
    assert ("trading     LIVE: real money through Alpaca's live API, APCA_PAPER=false, TRADING_ENABLED=true"
            in plan.stdout)
    assert "/journal-live/" in plan.stdout and "in Secrets Manager, never in the environment" in plan.stdout
    assert KEY_ID not in plan.stdout and SECRET not in plan.stdout

    refused = _deploy("up", "--live", *common, env=env)  # no terminal, no --yes
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: --live trades real money: run it on a terminal to confirm, or pass --yes"
    lam = clients(endpoint)["lambda"]
    assert "pt-live" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]

    import pty

    leader, follower = pty.openpty()  # a terminal: the wrong answer refuses, nothing is made
    os.write(leader, b"yes\n")
    wrong = _deploy("up", "--live", *common, env=env, stdin=follower)
    assert wrong.returncode == 2 and "Type the function name (pt-live)" in wrong.stderr
    assert wrong.stderr.strip().endswith("error: not confirmed: nothing was built or changed")
    assert "pt-live" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    os.write(leader, b"pt-live\n")
    typed = _deploy("up", "--live", *common, env=env, stdin=follower)
    os.close(leader), os.close(follower)
    assert typed.returncode == 0, typed.stderr
    live_env = lam.get_function_configuration(FunctionName="pt-live")["Environment"]["Variables"]
    assert live_env["APCA_PAPER"] == "false" and live_env["TRADING_ENABLED"] == "true"
    assert live_env["JOURNAL"].endswith("/journal-live/")
    live_state = status(DeployConfig(function_name="pt-live", region="us-east-1", endpoint_url=endpoint))
    assert "trading     LIVE (APCA_PAPER=false, TRADING_ENABLED=true)" in render(live_state)

    # back to paper by an `up` without --live: explicitly paper, on the paper journal
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    _in_process(capsys, "up", "--region", "us-east-1", *common)
    paper_env = lam.get_function_configuration(FunctionName="pt-live")["Environment"]["Variables"]
    assert paper_env["APCA_PAPER"] == "true" and paper_env["JOURNAL"].endswith("/journal/")
    assert "TRADING_ENABLED" not in paper_env
    _in_process(capsys, "up", "--region", "us-east-1", "--live", "--yes", *common)
    assert lam.get_function_configuration(FunctionName="pt-live")["Environment"]["Variables"]["APCA_PAPER"] == "false"
    from deploy.__main__ import run

    with pytest.raises(SystemExit) as bad:
        run(["up", "--dry-run", "--live", "--broker", "paper", *common])
    assert bad.value.code == 2 and "drop --broker paper" in capsys.readouterr().err


def test_plan_shows_strategy_config_cadence_mode_and_market_data_values():
    env = _no_aws_env()
    r = _deploy("up", "--dry-run", "--region", "us-east-1", "--config", "examples/seed_15min.toml", env=env)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in reversed(r.stdout.splitlines()[1:])}
    assert "seed-15min: strategies.prophet_trend.ProphetTrend (source sha256 " in lines["strategy"]
    assert "examples/seed_15min.toml" in lines["config"] and "bar=1m" in lines["config"]
    assert "every 15min slot" in lines["cadence"] and "cron(0,15,30,45 10-15 ? * MON-FRI *)" in lines["cadence"]
    assert "paper: Alpaca's paper API, APCA_PAPER=true, TRADING_ENABLED=true" in lines["trading"]
    assert lines["data"].split()[1] == "MARKET_DATA=alpaca"  # the config's market_data
    assert "MARKET_DATA=alpaca" in lines["function"] and "APCA_PAPER=true" in lines["function"]
    flag = _deploy("up", "--dry-run", "--region", "us-east-1", "--config", "examples/seed_15min.toml",
                   "--market-data", "yfinance", "--env", "TRADING_ENABLED=false", env=env)
    assert "data        MARKET_DATA=yfinance" in flag.stdout and "TRADING_ENABLED=false" in flag.stdout
    help_text = _deploy("up", "--help", env=env).stdout
    assert "alpaca" in help_text.split("\n  --market-data SOURCE")[1].split("\n  --")[0]


def test_a_changed_alarm_email_unsubscribes_the_old_one(endpoint, artifacts, monkeypatch):  # noqa: F811
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    cfg = DeployConfig(function_name="pt-mail", region="us-east-1", endpoint_url=endpoint,
                       alarm_email="old@example.com")
    up(cfg, artifacts)
    steps = up(cfg.with_(alarm_email="new@example.com"), artifacts)
    assert [(s.action, s.detail.split()[1]) for s in steps if s.resource == "subscribe"] == [
        ("created", "new@example.com"), ("deleted", "old@example.com")]
    topic = "arn:aws:sns:us-east-1:123456789012:pt-mail-alerts"
    subs = clients(endpoint)["sns"].list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [s["Endpoint"] for s in subs] == ["new@example.com"]
    kept = up(cfg.with_(alarm_email=None), artifacts)  # no --alarm-email: the subscription stays
    assert not [s for s in kept if s.resource == "subscribe"]
    assert len(clients(endpoint)["sns"].list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]) == 1
