"""``python -m deploy up/status/down`` against moto's server on 127.0.0.1 with the real boto3.

Lambda invoke needs Docker under moto, so the handler itself is exercised by tests/test_deploy_artifact.py.

moto evaluates a bucket policy without its conditions: the TLS-only statement (Deny s3:* when aws:SecureTransport
is false) would deny every object request, over TLS or not. boto3 talks to AWS over TLS, where that statement
does not apply, so here the server treats requests as TLS (``_tls_aware_permission``); every other statement of a
bucket policy is enforced as moto does.
"""

from __future__ import annotations

import fnmatch
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

def _tls_only(statement: dict) -> bool:
    return str(statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"


def _tls_aware_permission(self, action, resource):
    """moto's ``FakeBucket.get_permission`` with the TLS-only statements left out (requests count as TLS)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if self.policy is None:
        return PermissionResult.NEUTRAL
    doc = json.loads(self.policy)
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    doc["Statement"] = [s for s in statements if not _tls_only(s)]
    return IAMPolicy(json.dumps(doc)).is_action_permitted(action, resource) if doc["Statement"] else \
        PermissionResult.NEUTRAL

ROOT = Path(__file__).resolve().parent.parent
KEY_ID, SECRET = "PKTESTKEYID0001", "sEcReT-ValUe-42"


@pytest.fixture(scope="module")
def endpoint():
    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    from moto.s3.models import FakeBucket

    try:
        with pytest.MonkeyPatch.context() as mp, moto_server() as url:
            mp.setattr(FakeBucket, "get_permission", _tls_aware_permission)
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
    return {n: make(n) for n in ("lambda", "scheduler", "iam", "s3", "secretsmanager", "ssm", "sqs", "sns",
                                 "cloudwatch")}


@pytest.fixture()
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


def actions(steps, resource):
    return [s.action for s in steps if s.resource == resource]


def test_up_twice_updates_without_duplicates_then_status_and_down(endpoint, artifacts, keys, tmp_path):
    cfg = DeployConfig(function_name="pt-main", region="us-east-1", endpoint_url=endpoint,
                       alarm_email="ops@example.com")
    first = up(cfg, artifacts)
    assert actions(first, "function") == ["created"]
    assert actions(first, "layer") == ["published"]
    assert actions(first, "secret") == ["created"]
    assert actions(first, "schedule") == ["created"] * 2
    assert actions(first, "topic") == ["created"] and actions(first, "subscribe") == ["created"]
    assert actions(first, "alarm") == ["created"] * 3

    second = up(cfg.with_(memory_mb=2048), artifacts)
    assert actions(second, "layer") == ["unchanged"]
    assert actions(second, "bucket") == ["unchanged"]
    assert actions(second, "upload") == ["unchanged"]
    assert actions(second, "secret") == ["unchanged"]
    assert actions(second, "schedule") == ["unchanged"] * 2
    assert actions(second, "async") == ["unchanged"] and actions(second, "alarm") == ["unchanged"] * 3
    assert actions(second, "topic") == ["unchanged"] and actions(second, "subscribe") == ["unchanged"]
    assert actions(second, "concurrency") == ["unchanged"]
    function_step = next(s for s in second if s.resource == "function")
    assert function_step.action == "updated" and "MemorySize" in function_step.detail

    c = clients(endpoint)
    bucket = "pt-main-123456789012-us-east-1"
    assert c["s3"].get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    (rule,) = c["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    (tls,) = json.loads(c["s3"].get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(tls["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}

    assert c["lambda"].get_function_concurrency(FunctionName="pt-main")["ReservedConcurrentExecutions"] == 1
    topic_arn = "arn:aws:sns:us-east-1:123456789012:pt-main-alerts"
    assert [t["TopicArn"] for t in c["sns"].list_topics()["Topics"]].count(topic_arn) == 1
    subs = c["sns"].list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert [(x["Protocol"], x["Endpoint"]) for x in subs] == [("email", "ops@example.com")]
    alarms = {a["AlarmName"]: a for a in c["cloudwatch"].describe_alarms(AlarmNamePrefix="pt-main")["MetricAlarms"]}
    assert set(alarms) == {"pt-main-errors", "pt-main-cycle-errors", "pt-main-missed-decisions"}
    missed = alarms["pt-main-missed-decisions"]  # no silent skipped days (issue 16, item 10)
    assert (missed["Namespace"], missed["MetricName"], missed["Dimensions"]) == (
        "ProphetTrend", "DecisionsMissed", [{"Name": "Function", "Value": "pt-main"}])
    assert missed["Threshold"] == 1.0 and missed["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    cycle = alarms["pt-main-cycle-errors"]
    assert (cycle["Namespace"], cycle["MetricName"], cycle["Statistic"], cycle["Period"], cycle["Threshold"]) == (
        "ProphetTrend", "CycleErrors", "Sum", 900, 1.0)
    assert cycle["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and cycle["EvaluationPeriods"] == 1
    assert cycle["Dimensions"] == [{"Name": "Function", "Value": "pt-main"}]
    assert cycle["TreatMissingData"] == "notBreaching"
    assert alarms["pt-main-errors"]["MetricName"] == "Errors"
    assert all(a["AlarmActions"] == [topic_arn] for a in alarms.values())

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
    assert env["ALPACA_SECRET_NAME"] == "pt-main/alpaca" and env["NOTIFY_TOPIC_ARN"] == topic_arn
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
    assert len(schedules) == 2  # the default daily cadence: 15:45, and 12:45 for early-close days, each retried at :50
    details = [c["scheduler"].get_schedule(Name=s["Name"], GroupName="pt-main") for s in schedules]
    assert sorted(d["ScheduleExpression"] for d in details) == [
        "cron(45,50 12 ? * MON-FRI *)", "cron(45,50 15 ? * MON-FRI *)"]
    assert {d["ScheduleExpressionTimezone"] for d in details} == {"America/New_York"}
    assert {d["Target"]["Arn"] for d in details} == {conf["FunctionArn"]}
    assert {d["Target"]["Input"] for d in details} == {'{"source": "schedule"}'}  # what live.event accepts

    policy = c["iam"].get_role_policy(RoleName="pt-main-exec", PolicyName="pt-main-exec")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    granted: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for a in statement["Action"]:
            granted.setdefault(a, []).extend(resources)
    assert all("*" != r and not r.endswith(":*:*") for rs in granted.values() for r in rs)
    assert not any(a.endswith(":*") or a == "*" for a in granted)
    secret_arn = c["secretsmanager"].describe_secret(SecretId="pt-main/alpaca")["ARN"]
    assert granted["secretsmanager:GetSecretValue"] == [secret_arn]
    journal = f"arn:aws:s3:::{bucket}/journal/"
    ledger, lease, marks = journal + "ledger/*", journal + "lease/*", journal + "decisions/*"
    assert sorted(granted["s3:GetObject"]) == sorted(granted["s3:DeleteObject"]) == sorted([ledger, lease, marks])
    assert sorted(granted["s3:PutObject"]) == sorted([journal + "????-??-??/*", journal + "undated/*", ledger, lease,
                                                      marks])
    # IAM's `*` and `?` match like fnmatch's: the cycle's record is writable, nothing else outside the two prefixes.
    may_put = lambda key: any(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", r) for r in granted["s3:PutObject"])  # noqa: E731
    assert may_put("journal/2022-06-01/2022-06-01T15:45-prophet-trend.json") and may_put("journal/undated/x.json")
    assert may_put("journal/ledger/prophet-trend.json") and may_put("journal/lease/prophet-trend.json")
    assert may_put("journal/decisions/prophet-trend/2022-06-01.json")  # the daily cadence's decision mark
    assert not may_put("deploy/pt-main/function.zip") and not may_put("journal/notes.json")
    assert granted["sns:Publish"] == [topic_arn] and granted["sqs:SendMessage"] == [queue_arn]
    # listing only the bucket, only for its journal prefix (S3 answers 404, not 403, for a missing ledger then)
    listing, = [s for s in policy["Statement"] if "s3:ListBucket" in s["Action"]]
    assert granted["s3:ListBucket"] == [f"arn:aws:s3:::{bucket}"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["journal/*"]}}
    assert set(granted) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject",
                            "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "secretsmanager:GetSecretValue",
                            "sqs:SendMessage", "sns:Publish"}

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
    assert "cron(45,50 15 ? * MON-FRI *) America/New_York" in text and SECRET not in text
    assert state["function"]["ReservedConcurrency"] == 1 and "concurrency reserved 1" in text
    assert state["topic"]["Arn"] == topic_arn and f"topic       {topic_arn}: email ops@example.com" in text
    states = {a["AlarmName"]: a["StateValue"] for a in c["cloudwatch"].describe_alarms(AlarmNamePrefix="pt-main")["MetricAlarms"]}
    assert [(a["Name"], a["State"]) for a in state["alarms"]] == sorted(states.items())
    assert f"alarm       pt-main-cycle-errors: {states['pt-main-cycle-errors']} (ProphetTrend CycleErrors)" in text

    gone = down(cfg)
    assert actions(gone, "function") == ["deleted"] and actions(gone, "bucket") == ["kept"]
    assert c["lambda"].list_layer_versions(LayerName="pt-main-deps")["LayerVersions"] == []
    assert not [f for f in c["lambda"].list_functions()["Functions"] if f["FunctionName"] == "pt-main"]
    assert not [r for r in c["iam"].list_roles()["Roles"] if r["RoleName"].startswith("pt-main")]
    assert actions(gone, "topic") == ["deleted"] and actions(gone, "alarm") == ["deleted"] * 3
    assert topic_arn not in [t["TopicArn"] for t in c["sns"].list_topics()["Topics"]]
    assert not [x for x in c["sns"].list_subscriptions()["Subscriptions"] if x["TopicArn"] == topic_arn]
    assert c["cloudwatch"].describe_alarms(AlarmNamePrefix="pt-main")["MetricAlarms"] == []
    assert next(s.detail.split()[0] for s in gone if s.resource == "bucket") == bucket
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
    assert "512 MB" in r.stdout and "cron(30,35 11 ? * MON-FRI *); " not in r.stdout and "America/New_York" in r.stdout
    assert "cron(30,35 11 ? * MON-FRI *)" in r.stdout and "cron(45 15" not in r.stdout and "STRATEGY_CONFIG" in r.stdout
    clash = subprocess.run([sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "eu-west-1",
                            "--env", "STRATEGY_TOP_N=3"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert clash.returncode == 2 and "disagree" in clash.stderr
    assert "retries 0" in r.stdout
    plan = {line.split()[0]: line for line in reversed(r.stdout.splitlines()[1:])}  # first line of each resource
    assert "reserved 1" in plan["concurrency"] and "NOTIFY_TOPIC_ARN" in plan["function"]
    assert "arn:aws:sns:eu-west-1:<account>:prophettrend-alerts" in plan["topic"]
    assert "prophettrend-cycle-errors: ProphetTrend CycleErrors (Function=prophettrend) sum >= 1" in r.stdout
    assert "s3:ListBucket" in plan["role"] and "sns:Publish" in plan["role"] and "ledger/*" in plan["role"]
    assert "AES256, TLS only" in plan["bucket"] and plan["subscribe"].split()[1] == "none"


def test_credential_looking_env_is_refused_with_one_line_naming_real_flags():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    dry = [sys.executable, "-m", "deploy", "up", "--dry-run", "--region", "us-east-1"]
    run = lambda *a: subprocess.run([*dry, *a], cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: E731
    help_text = subprocess.run([sys.executable, "-m", "deploy", "up", "--help"], cwd=ROOT, env=env,
                               capture_output=True, text=True).stdout
    for name in ("AWS_SECRET_ACCESS_KEY", "ALPACA_SECRET", "APCA_API_KEY_ID", "my_api_key", "GITHUB_TOKEN",
                 "DB_PASSWORD", "AWS_REGION"):
        r = run("--env", f"{name}=sEcReT-ValUe-42")
        assert r.returncode == 2 and r.stdout == "", (name, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --env {name}: looks like a credential"), r.stderr
        assert "sEcReT-ValUe-42" not in r.stderr
        named_flags = {w.strip("(),;`") for w in lines[0].split() if w.startswith(("--", "(--"))}
        assert named_flags and all(f"{flag.split('=')[0]} " in help_text for flag in named_flags), named_flags
        assert "APCA_API_KEY_ID and APCA_API_SECRET_KEY" in lines[0]
    # Settings that merely start like Alpaca's are not credentials; real money is chosen by --live alone.
    r = run("--env", "APCA_PAPER=true", "--env", "UNIVERSE=AAPL,MSFT")
    assert r.returncode == 0, r.stderr
    assert "APCA_PAPER=true" in r.stdout and "UNIVERSE=AAPL,MSFT" in r.stdout
    r = run("--env", "APCA_PAPER=false")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --env APCA_PAPER=false: real money is chosen with --live (it asks for confirmation)")


def _bucket(c, name, block=None, encrypt=False, tls=False, tags=None):
    c["s3"].create_bucket(Bucket=name)
    if block is not None:
        c["s3"].put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if encrypt:
        c["s3"].put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    if tls:
        c["s3"].put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Sid": "UsersOwnTls", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": False}}}]}))
    if tags:
        c["s3"].put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})


ALL_BLOCKED = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
               "RestrictPublicBuckets": True}


def test_existing_bucket_is_checked_and_refused_unless_protected(endpoint, artifacts, keys):
    c = clients(endpoint)

    def settings(b):
        block = c["s3"].get_public_access_block(Bucket=b) if b != "user-open" else None
        policy = c["s3"].get_bucket_policy(Bucket=b)["Policy"] if b != "user-no-tls" and block else None
        return block and block["PublicAccessBlockConfiguration"], policy
    _bucket(c, "user-open")
    _bucket(c, "user-half-blocked", block={**ALL_BLOCKED, "RestrictPublicBuckets": False}, encrypt=True, tls=True)
    _bucket(c, "user-unencrypted-tls", block=ALL_BLOCKED, tls=True)
    _bucket(c, "user-no-tls", block=ALL_BLOCKED, encrypt=True)
    expected = {"user-open": "public access block, default encryption, TLS-only policy",
                "user-half-blocked": "public access block;",
                "user-unencrypted-tls": "default encryption;",
                "user-no-tls": "TLS-only policy;"}
    for name, missing in expected.items():
        before = settings(name)
        cfg = DeployConfig(function_name="pt-userbucket", region="us-east-1", endpoint_url=endpoint, bucket=name)
        with pytest.raises(UserError) as refused:
            up(cfg, artifacts)
        message = str(refused.value)
        assert message.startswith(f"bucket {name} lacks {missing}"), message
        assert "\n" not in message and "up changes no bucket it did not create" in message
        assert settings(name) == before  # nothing changed on the user's bucket
        assert "Contents" not in c["s3"].list_objects_v2(Bucket=name)
    assert not [f for f in c["lambda"].list_functions()["Functions"] if f["FunctionName"] == "pt-userbucket"]
    assert not [t for t in c["sns"].list_topics()["Topics"] if "pt-userbucket" in t["TopicArn"]]

    with pytest.raises(UserError, match="does not exist"):
        up(DeployConfig(function_name="pt-userbucket", region="us-east-1", endpoint_url=endpoint,
                        bucket="user-missing"), artifacts)

    # A protected bucket of the user's is used as it is, and `down` leaves it (and its policy) alone.
    _bucket(c, "user-safe", block=ALL_BLOCKED, encrypt=True, tls=True)
    policy = c["s3"].get_bucket_policy(Bucket="user-safe")["Policy"]
    cfg = DeployConfig(function_name="pt-userbucket", region="us-east-1", endpoint_url=endpoint, bucket="user-safe")
    steps = up(cfg, artifacts)
    assert actions(steps, "bucket") == ["unchanged"] and actions(steps, "function") == ["created"]
    assert c["s3"].get_bucket_policy(Bucket="user-safe")["Policy"] == policy
    gone = down(cfg, delete_bucket=True)
    assert actions(gone, "bucket") == ["kept"]
    assert c["s3"].get_bucket_policy(Bucket="user-safe")["Policy"] == policy


def test_bucket_an_older_up_created_is_brought_up_to_date(endpoint, artifacts, keys):
    from deploy.up import CREATED_TAG, OWNER_TAG

    c = clients(endpoint)
    name = "pt-old-123456789012-us-east-1"
    other = {"Sid": "ReadOnlyAuditor", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/journal/*"}
    _bucket(c, name, block=ALL_BLOCKED, tags={OWNER_TAG: "pt-old", CREATED_TAG: "deploy"})
    c["s3"].put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [other]}))
    cfg = DeployConfig(function_name="pt-old", region="us-east-1", endpoint_url=endpoint)
    steps = up(cfg, artifacts)
    (bucket_step,) = [s for s in steps if s.resource == "bucket"]
    assert bucket_step.action == "updated" and bucket_step.detail.endswith("added default encryption, TLS-only policy")
    assert c["s3"].get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    statements = json.loads(c["s3"].get_bucket_policy(Bucket=name)["Policy"])["Statement"]
    assert statements[0] == other and statements[1]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert actions(up(cfg, artifacts), "bucket") == ["unchanged"]
    down(cfg, delete_bucket=True)


def test_cli_refuses_an_unprotected_bucket_in_one_line(endpoint, artifacts):
    clients(endpoint)["s3"].create_bucket(Bucket="user-cli-open")
    env = {**os.environ, **FAKE_AWS_ENV, "APCA_API_KEY_ID": KEY_ID, "APCA_API_SECRET_KEY": SECRET}
    r = subprocess.run([sys.executable, "-m", "deploy", "up", "--function-name", "pt-cli-bucket", "--region",
                        "us-east-1", "--endpoint-url", endpoint, "--bucket", "user-cli-open",
                        "--function-zip", str(artifacts.function_zip), "--layer-zip", str(artifacts.layer_zip)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: bucket user-cli-open lacks public access block, default encryption, "
                               "TLS-only policy") and len(r.stderr.strip().splitlines()) == 1


def test_invoke_while_a_cycle_runs_is_one_line_not_a_retry_storm(monkeypatch):
    from botocore.stub import Stubber

    from deploy.aws import Aws
    from deploy.ops import invoke

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = DeployConfig(function_name="pt-busy", region="us-east-1")
    aws = Aws(cfg)
    client = aws.client("lambda")
    with Stubber(client) as stub:  # Lambda's answer when the one reserved execution is in use
        for _ in range(10):
            stub.add_client_error("invoke", service_error_code="TooManyRequestsException", http_status_code=429,
                                  service_message="Rate Exceeded.")
        with pytest.raises(UserError, match="is running now .*reserved concurrency 1"):
            invoke(cfg, {"dry_run": True}, aws=aws)


def test_a_quota_too_small_to_reserve_one_execution_stops_up_before_the_schedules(monkeypatch):
    from botocore.stub import Stubber

    from deploy.aws import Aws
    from deploy.up import Deployer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = DeployConfig(function_name="pt-quota", region="us-east-1", bucket="b-quota")
    aws = Aws(cfg)
    deployer = Deployer(cfg, aws, Artifacts.describe_only())
    with Stubber(aws.client("lambda")) as stub:  # what Lambda answers on an account whose quota is 10
        stub.add_response("get_function_concurrency", {}, {"FunctionName": "pt-quota"})
        stub.add_client_error("put_function_concurrency", service_error_code="InvalidParameterValueException",
                              http_status_code=400, service_message=(
                                  "Specified ReservedConcurrentExecutions for function decreases account's "
                                  "UnreservedConcurrentExecution below its minimum value of [10]."))
        with pytest.raises(UserError, match="cannot reserve 1 concurrent execution for pt-quota: .*Service Quotas"):
            deployer.ensure_concurrency()
