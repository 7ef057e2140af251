"""``python -m deploy up/status/down`` against moto's server on 127.0.0.1 with the real boto3.

Lambda invoke needs Docker under moto, so the handler itself is exercised by tests/test_deploy_artifact.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from clitools import UserError
from deploy.config import DeployConfig
from deploy.down import down
from deploy.function_zip import build_function_zip
from deploy.status import render, status
from deploy.up import Artifacts, up
from deploy.zipfiles import write_zip
from tests._moto_server import FAKE_AWS_ENV, moto_server

ROOT = Path(__file__).resolve().parent.parent
KEY_ID, SECRET = "PKTESTKEYID0001", "sEcReT-ValUe-42"


@pytest.fixture(scope="module")
def endpoint():
    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    try:
        with moto_server() as url:
            yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    out = tmp_path_factory.mktemp("artifacts")
    function_zip, _ = build_function_zip(out / "function.zip")
    layer_root = out / "layer"
    (layer_root / "python" / "fakepkg").mkdir(parents=True)
    (layer_root / "python" / "fakepkg" / "__init__.py").write_text("VERSION = 1\n")
    return Artifacts(function_zip, write_zip(layer_root, out / "layer-py3.12-x86_64.zip"))


def clients(url: str):
    make = lambda name: boto3.client(name, endpoint_url=url, region_name="us-east-1")  # noqa: E731
    return {n: make(n) for n in ("lambda", "scheduler", "iam", "s3", "secretsmanager", "ssm", "sqs")}


@pytest.fixture()
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


def actions(steps, resource):
    return [s.action for s in steps if s.resource == resource]


def test_up_twice_updates_without_duplicates_then_status_and_down(endpoint, artifacts, keys, tmp_path):
    cfg = DeployConfig(function_name="pt-main", region="us-east-1", endpoint_url=endpoint)
    first = up(cfg, artifacts)
    assert actions(first, "function") == ["created"]
    assert actions(first, "layer") == ["published"]
    assert actions(first, "secret") == ["created"]
    assert actions(first, "schedule") == ["created"] * 2

    second = up(cfg.with_(memory_mb=2048), artifacts)
    assert actions(second, "layer") == ["unchanged"]
    assert actions(second, "bucket") == ["unchanged"]
    assert actions(second, "upload") == ["unchanged"]
    assert actions(second, "secret") == ["unchanged"]
    assert actions(second, "schedule") == ["unchanged"] * 2
    assert actions(second, "async") == ["unchanged"] and actions(second, "alarm") == ["unchanged"]
    function_step = next(s for s in second if s.resource == "function")
    assert function_step.action == "updated" and "MemorySize" in function_step.detail

    c = clients(endpoint)
    assert [f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]].count("pt-main") == 1
    layers = c["lambda"].list_layer_versions(LayerName="pt-main-deps")["LayerVersions"]
    assert len(layers) == 1 and layers[0]["Description"].endswith("sha256:" + artifacts.layer_sha)
    assert len([r for r in c["iam"].list_roles()["Roles"] if r["RoleName"].startswith("pt-main")]) == 2
    assert len([s for s in c["secretsmanager"].list_secrets()["SecretList"] if s["Name"] == "pt-main/alpaca"]) == 1

    conf = c["lambda"].get_function_configuration(FunctionName="pt-main")
    assert conf["Runtime"] == "python3.12" and conf["Handler"] == "lambda_function.lambda_handler"
    assert conf["MemorySize"] == 2048 and conf["Architectures"] == ["x86_64"]
    assert [layer["Arn"] for layer in conf["Layers"]] == [layers[0]["LayerVersionArn"]]
    env = conf["Environment"]["Variables"]
    assert env["ALPACA_SECRET_NAME"] == "pt-main/alpaca"
    assert not any(KEY_ID in v or SECRET in v for v in env.values())
    assert not {"APCA_API_KEY_ID", "APCA_API_SECRET_KEY"} & set(env)
    stored = json.loads(c["secretsmanager"].get_secret_value(SecretId="pt-main/alpaca")["SecretString"])
    assert stored == {"APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET}

    invoke_cfg = c["lambda"].get_function_event_invoke_config(FunctionName="pt-main")
    assert invoke_cfg["MaximumRetryAttempts"] == 0
    queue_url = c["sqs"].get_queue_url(QueueName="pt-main-failures")["QueueUrl"]
    queue_arn = c["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert invoke_cfg["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn

    schedules = c["scheduler"].list_schedules(GroupName="pt-main")["Schedules"]
    assert len(schedules) == 2  # the default daily cadence: 15:45, and 12:45 for early-close days
    details = [c["scheduler"].get_schedule(Name=s["Name"], GroupName="pt-main") for s in schedules]
    assert sorted(d["ScheduleExpression"] for d in details) == [
        "cron(45 12 ? * MON-FRI *)", "cron(45 15 ? * MON-FRI *)"]
    assert {d["ScheduleExpressionTimezone"] for d in details} == {"America/New_York"}
    assert {d["Target"]["Arn"] for d in details} == {conf["FunctionArn"]}

    policy = c["iam"].get_role_policy(RoleName="pt-main-exec", PolicyName="pt-main-exec")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    granted = {a: s["Resource"] for s in policy["Statement"] for a in s["Action"]}
    assert all("*" != r and not str(r).endswith(":*:*") for r in granted.values())
    assert not any(a.endswith(":*") or a == "*" for a in granted)
    secret_arn = c["secretsmanager"].describe_secret(SecretId="pt-main/alpaca")["ARN"]
    assert granted["secretsmanager:GetSecretValue"] == secret_arn
    assert granted["s3:PutObject"].endswith("/journal/*")
    assert set(granted) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject",
                            "s3:PutObject", "s3:ListBucket", "secretsmanager:GetSecretValue", "sqs:SendMessage"}

    # A new layer zip publishes version 2 and the function moves to it.
    layer_root = tmp_path / "layer2"
    (layer_root / "python" / "fakepkg").mkdir(parents=True)
    (layer_root / "python" / "fakepkg" / "__init__.py").write_text("VERSION = 2\n")
    new = Artifacts(artifacts.function_zip, write_zip(layer_root, tmp_path / "layer-py3.12-x86_64.zip"))
    third = up(cfg, new)
    assert any(s.resource == "layer" and s.action == "published" and s.detail.endswith(":2") for s in third)
    conf = c["lambda"].get_function_configuration(FunctionName="pt-main")
    assert conf["Layers"][0]["Arn"].endswith(":2")

    state = status(cfg)
    assert state["function"]["FunctionName"] == "pt-main" and state["async"]["MaximumRetryAttempts"] == 0
    assert len(state["layers"]) == 2 and state["secret"]["secretsmanager"] == "pt-main/alpaca"
    text = render(state)
    assert "cron(45 15 ? * MON-FRI *) America/New_York" in text and SECRET not in text

    gone = down(cfg)
    assert actions(gone, "function") == ["deleted"] and actions(gone, "bucket") == ["kept"]
    assert c["lambda"].list_layer_versions(LayerName="pt-main-deps")["LayerVersions"] == []
    assert not [f for f in c["lambda"].list_functions()["Functions"] if f["FunctionName"] == "pt-main"]
    assert not [r for r in c["iam"].list_roles()["Roles"] if r["RoleName"].startswith("pt-main")]
    bucket = next(s.detail.split()[0] for s in gone if s.resource == "bucket")
    c["s3"].head_bucket(Bucket=bucket)  # the journal bucket stays
    assert "Contents" not in c["s3"].list_objects_v2(Bucket=bucket, Prefix="deploy/")
    assert c["secretsmanager"].describe_secret(SecretId="pt-main/alpaca").get("DeletedDate")
    again = down(cfg)  # re-runnable
    assert not actions(again, "function")
    assert status(cfg)["function"] is None


def test_ssm_backend_and_paper_broker(endpoint, artifacts, keys, monkeypatch):
    cfg = DeployConfig(function_name="pt-ssm", region="us-east-1", endpoint_url=endpoint, secret_backend="ssm",
                       schedules=("rate(1 hour)",), timezone="UTC")
    up(cfg, artifacts)
    c = clients(endpoint)
    param = c["ssm"].get_parameter(Name="/pt-ssm/alpaca", WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString" and json.loads(param["Value"])["APCA_API_KEY_ID"] == KEY_ID
    env = c["lambda"].get_function_configuration(FunctionName="pt-ssm")["Environment"]["Variables"]
    assert env["ALPACA_SSM_PARAMETER"] == "/pt-ssm/alpaca" and "ALPACA_SECRET_NAME" not in env
    policy = c["iam"].get_role_policy(RoleName="pt-ssm-exec", PolicyName="pt-ssm-exec")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    ssm_statement = next(s for s in policy["Statement"] if s["Action"] == ["ssm:GetParameter"])
    assert ssm_statement["Resource"].endswith(":parameter/pt-ssm/alpaca")
    (only,) = c["scheduler"].list_schedules(GroupName="pt-ssm")["Schedules"]
    assert c["scheduler"].get_schedule(Name=only["Name"], GroupName="pt-ssm")["ScheduleExpressionTimezone"] == "UTC"
    down(cfg, delete_bucket=True)

    # Paper broker: no keys needed, no secret referenced.
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    paper = DeployConfig(function_name="pt-paper", region="us-east-1", endpoint_url=endpoint, broker="paper",
                         market_data="sample")
    steps = up(paper, artifacts)
    assert not actions(steps, "secret")
    env = c["lambda"].get_function_configuration(FunctionName="pt-paper")["Environment"]["Variables"]
    assert env["BROKER"] == "paper" and not {"ALPACA_SECRET_NAME", "ALPACA_SSM_PARAMETER"} & set(env)
    down(paper, delete_bucket=True)

    # Alpaca broker without keys and without a stored secret: a clear error, nothing half-made.
    with pytest.raises(UserError, match="APCA_API_KEY_ID"):
        up(DeployConfig(function_name="pt-nokeys", region="us-east-1", endpoint_url=endpoint), artifacts)
    assert not [f for f in c["lambda"].list_functions()["Functions"] if f["FunctionName"] == "pt-nokeys"]


def test_cli_up_status_down_one_line_errors(endpoint, artifacts):
    env = {**os.environ, **FAKE_AWS_ENV, "APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET}
    base = [sys.executable, "-m", "deploy"]
    common = ["--function-name", "pt-cli", "--region", "us-east-1", "--endpoint-url", endpoint]
    run = lambda *a, e=env: subprocess.run([*base, *a], cwd=ROOT, env=e, capture_output=True, text=True)  # noqa: E731

    r = run("up", *common, "--function-zip", str(artifacts.function_zip), "--layer-zip", str(artifacts.layer_zip))
    assert r.returncode == 0, r.stderr
    assert "function    created" in r.stdout and SECRET not in r.stdout + r.stderr
    r = run("status", *common, "--json")
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    assert {s["Timezone"] for s in state["schedules"]} == {"America/New_York"}
    assert "ALPACA_SECRET_NAME" in state["function"]["EnvironmentNames"]

    r = run("up", *common, "--function-zip", str(artifacts.function_zip), "--layer-zip", "/nonexistent/layer.zip")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    r = run("invoke", "--function-name", "pt-missing", "--region", "us-east-1", "--endpoint-url", endpoint)
    assert r.returncode == 2 and "not deployed" in r.stderr and "Traceback" not in r.stderr
    r = run("status", *common[:2], "--endpoint-url", "http://127.0.0.1:9", e={**env, "AWS_REGION": "", "AWS_DEFAULT_REGION": ""})
    assert r.returncode == 2 and r.stderr.strip() == "error: no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION"
    r = run("status", *common[:4], "--endpoint-url", "http://127.0.0.1:9", e={**env, "AWS_MAX_ATTEMPTS": "1"})
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1

    r = run("logs", *common)
    assert r.returncode == 2 and r.stderr.startswith("error: no logs yet: log group /aws/lambda/pt-cli")
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    logs.create_log_group(logGroupName="/aws/lambda/pt-cli")
    logs.create_log_stream(logGroupName="/aws/lambda/pt-cli", logStreamName="s1")
    now_ms = int(time.time() * 1000)
    logs.put_log_events(logGroupName="/aws/lambda/pt-cli", logStreamName="s1", logEvents=[
        {"timestamp": now_ms - 2000, "message": '{"event": "cycle_start"}'},
        {"timestamp": now_ms - 1000, "message": '{"event": "cycle_end", "status": "traded"}'}])
    r = run("logs", *common, "--since", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith('{"event": "cycle_start"}') and "traded" in lines[1]

    r = run("down", *common, "--delete-bucket")
    assert r.returncode == 0, r.stderr
    assert "function    deleted   pt-cli" in r.stdout and "bucket      deleted" in r.stdout


def test_dry_run_prints_the_plan_without_aws(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    config = tmp_path / "config.toml"
    config.write_text('strategy = "ma-crossover"\ndecision_time = "11:30"\n[params]\nfast = 5\n')
    r = subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "eu-west-1", "--memory", "512",
                        "--config", str(config), "--endpoint-url", "http://127.0.0.1:9"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the schedule is the config's cadence, nothing typed twice: 11:30 New York time only (before any early close)
    assert "512 MB" in r.stdout and "cron(30 11 ? * MON-FRI *); " not in r.stdout and "America/New_York" in r.stdout
    assert "cron(30 11 ? * MON-FRI *)" in r.stdout and "cron(45 15" not in r.stdout and "STRATEGY_CONFIG" in r.stdout
    clash = subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "eu-west-1",
                            "--env", "STRATEGY_TOP_N=3"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert clash.returncode == 2 and "disagree" in clash.stderr
    assert "retries 0" in r.stdout
