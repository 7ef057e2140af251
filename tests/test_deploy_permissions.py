"""Real AWS permissions (issue 16, item 8): a fresh ``python -m deploy up`` (against moto's server), then the first
cycle run with the deployed function's environment while an S3 stand-in enforces the role's own policy the way S3
does (tests/_s3_policy_proxy.py: 403 for anything not allowed, and 403 instead of 404 for a missing key unless the
role may list it). The first cycle trades; with ``s3:ListBucket`` taken out of the policy it fails with one line
naming ``s3:ListBucket`` (so this test can fail)."""

from __future__ import annotations

import copy
import json
import os
import zipfile
from pathlib import Path

import boto3
import pytest

from _live_env import SLOT
from _moto_server import FAKE_AWS_ENV, moto_server
from _s3_policy_proxy import policy_proxy
from brokers.paper import PaperBroker
from deploy.__main__ import run as deploy_cli
from live.cycle import run
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "pt-perms"


@pytest.fixture()
def deployed(tmp_path, monkeypatch):
    """A fresh deploy on moto: yields (moto url, the function's environment, the role's inline policy)."""
    from deploy.function_zip import build_function_zip
    from deploy.zipfiles import write_zip
    from moto.s3.models import FakeBucket
    from tests.test_deploy_aws import _tls_aware_permission  # moto ignores the TLS-only statement's condition

    from deploy.strategy_bundle import strategy_bundle

    bundle = strategy_bundle(None, None, ["top_n=3"], None)  # what `deploy build --param top_n=3` packs
    function_zip, _ = build_function_zip(tmp_path / "function.zip", extra=dict(bundle.files))
    (tmp_path / "layer" / "python" / "fakepkg").mkdir(parents=True)
    (tmp_path / "layer" / "python" / "fakepkg" / "__init__.py").write_text("VERSION = 1\n")
    layer_zip = write_zip(tmp_path / "layer", tmp_path / "layer-py3.12-x86_64.zip")
    monkeypatch.setattr(FakeBucket, "get_permission", _tls_aware_permission)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in FAKE_AWS_ENV.items():  # the server runs in this process: its own calls need them too
        monkeypatch.setenv(key, value)
    with moto_server() as url:
        for key in [k for k in os.environ if k.startswith("APCA_")]:
            monkeypatch.delenv(key)
        # `python -m deploy up`, in this process (its entry point, without another interpreter's start-up)
        code = deploy_cli(["up", "--endpoint-url", url, "--region", "us-east-1", "--function-name", FUNCTION,
                           "--broker", "paper", "--market-data", "sample", "--function-zip", str(function_zip),
                           "--layer-zip", str(layer_zip), "--param", "top_n=3", "--env", "UNIVERSE=KO,PG,JNJ,PEP,MRK"])
        assert code == 0
        make = lambda name: boto3.client(name, endpoint_url=url, region_name="us-east-1")  # noqa: E731
        function_env = make("lambda").get_function_configuration(FunctionName=FUNCTION)["Environment"]["Variables"]
        role = f"{FUNCTION}-exec"
        policy = make("iam").get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
        task = tmp_path / "task"  # the function as Lambda unpacks it: STRATEGY_CONFIG is relative to it
        with zipfile.ZipFile(function_zip) as z:
            z.extractall(task)
        monkeypatch.chdir(task)
        yield url, function_env, policy if isinstance(policy, dict) else json.loads(policy)


def _first_cycle(tmp_path: Path, monkeypatch, upstream: str, function_env: dict, policy: dict):
    with policy_proxy(upstream, policy) as proxy:
        # S3 through the enforcing proxy; the other services (SNS for the fill notice) straight to moto
        for key, value in {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": upstream, "AWS_ENDPOINT_URL_S3": proxy.url}.items():
            monkeypatch.setenv(key, value)
        env = {**function_env, "AWS_LAMBDA_FUNCTION_NAME": FUNCTION, "STATE_DIR": str(tmp_path),
               "LOG_LEVEL": "WARNING", "LEASE_MIN_SECONDS": "900"}
        return run({"now": SLOT}, env=env), proxy.denied


def test_a_fresh_deploy_trades_its_first_cycle_under_the_role_it_created_and_not_without_list_bucket(
        deployed, tmp_path, monkeypatch):
    url, function_env, policy = deployed
    assert function_env["JOURNAL"].startswith("s3://") and function_env["BROKER"] == "paper"

    # the same deploy with s3:ListBucket taken out of the role: one line names the missing permission
    no_list = copy.deepcopy(policy)
    no_list["Statement"] = [s for s in no_list["Statement"] if "s3:ListBucket" not in s["Action"]]
    assert len(no_list["Statement"]) == len(policy["Statement"]) - 1
    failed, denied = _first_cycle(tmp_path / "no-list", monkeypatch, url, function_env, no_list)
    assert failed["status"] == "error" and failed["error"]["type"] == "ledger", failed
    message = failed["error"]["message"]
    assert "\n" not in message and "s3:ListBucket" in message and "ledger/prophet-trend.json" in message, message
    assert ("s3:ListBucket", f"arn:aws:s3:::{function_env['JOURNAL'][5:].split('/')[0]}") in denied
    assert not (tmp_path / "no-list" / "paper.sqlite").exists() or \
        PaperBroker(tmp_path / "no-list" / "paper.sqlite", SampleProvider()).orders() == []

    # the role exactly as deploy up made it: the first cycle creates its ledger, takes its lease, and trades
    traded, denied = _first_cycle(tmp_path / "deployed", monkeypatch, url, function_env, policy)
    assert traded["status"] == "traded", traded
    assert denied == [], denied  # nothing the code does is outside the role
    bucket, _, prefix = function_env["JOURNAL"][len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert f"{prefix}ledger/prophet-trend.json" in keys and f"{prefix}lease/prophet-trend.json" not in keys
    assert any(k.startswith(f"{prefix}2022-06-01/") for k in keys)  # the cycle's journal record

    # every other denial is one line naming its permission too: the store tells a missing GetObject from a
    # missing ListBucket, and names PutObject and DeleteObject
    from live.store import S3Store, StoreError

    only_list = {"Statement": [s for s in policy["Statement"] if "s3:ListBucket" in s["Action"]]}
    with policy_proxy(url, only_list) as proxy:
        store = S3Store(bucket, boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1"))
        for attempt, needed in ((lambda: store.read(f"{prefix}ledger/prophet-trend.json"), "s3:GetObject"),
                                (lambda: store.write_if_absent(f"{prefix}ledger/x.json", b"{}"), "s3:PutObject"),
                                (lambda: store.delete_if_unchanged(f"{prefix}ledger/prophet-trend.json", '"v"'),
                                 "s3:DeleteObject")):
            with pytest.raises(StoreError) as denied_:
                attempt()
            line = str(denied_.value)
            assert "\n" not in line and f"needs {needed} on arn:aws:s3:::{bucket}/{prefix}ledger/" in line, line
            assert "s3:ListBucket" not in line, line
