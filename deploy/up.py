"""``python -m deploy up``: create or update everything, idempotently; ``plan()`` says what it will do.

Order matters: bucket (checked, or created protected) and uploads, layer, secret, failure queue, alert topic,
execution role (its policy names the secret, the queue and the topic), function, its reserved concurrency of 1,
asynchronous-invoke settings, alarms, then the scheduler role and schedules (they name the function, and start
only once one cycle at a time is guaranteed). Each step looks before it writes, so a second run changes only what differs and never creates
a duplicate: the layer is published only when the zip's SHA-256 (kept in the layer version's description)
is new, the code is updated only when Lambda's ``CodeSha256`` differs.

Example:
    >>> from deploy.config import DeployConfig
    >>> print(plan(DeployConfig(region="us-east-1"), Artifacts.describe_only())[0])
    bucket      prophettrend-<account>-us-east-1 (created if missing: public access blocked, AES256, TLS only)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from clitools import UserError
from deploy import bucket as journal_bucket
from deploy import policies
from deploy.aws import Aws, error_code
from deploy.schedule import SCHEDULE_INPUT
from deploy.config import (CYCLE_ERROR_METRIC, HANDLER, METRIC_DIMENSION, METRIC_NAMESPACE,
                           MISSED_DECISION_METRIC, RESERVED_CONCURRENCY, RUNTIME, DeployConfig)
from deploy.zipfiles import sha256_of

OWNER_TAG = "prophettrend:function"
CREATED_TAG = "prophettrend:created-by"
KEY_ENV = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")


@dataclass(frozen=True)
class Artifacts:
    """The two zips ``up`` deploys, with their content hashes."""

    function_zip: Path
    layer_zip: Path

    @classmethod
    def describe_only(cls) -> "Artifacts":
        return cls(Path("build/lambda/function.zip"), Path("build/lambda/layer.zip"))

    def check(self) -> None:
        for path in (self.function_zip, self.layer_zip):
            if not Path(path).is_file():
                raise UserError(f"{path} not found: run `python -m deploy build` first (or drop --skip-build)")

    @property
    def layer_sha(self) -> str:
        return sha256_of(self.layer_zip)

    @property
    def function_sha(self) -> str:
        return sha256_of(self.function_zip)

    @property
    def function_code_sha(self) -> str:
        """The zip's hash as Lambda reports it (``CodeSha256``: base64 of the SHA-256 digest)."""
        return base64.b64encode(hashlib.sha256(Path(self.function_zip).read_bytes()).digest()).decode()


@dataclass
class Step:
    resource: str
    action: str  # created | updated | unchanged | published | skipped | deleted | kept
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.resource:<12}{self.action:<10}{self.detail}"


def function_environment(cfg: DeployConfig, bucket: str, topic_arn: str | None = None) -> dict[str, str]:
    """The function's variables: where the keys are (a name, never a value), journal, data source, alert topic.

    >>> env = function_environment(DeployConfig(), "b", "arn:aws:sns:us-east-1:1:prophettrend-alerts")
    >>> env["ALPACA_SECRET_NAME"], env["JOURNAL"], env["BROKER"], env["NOTIFY_TOPIC_ARN"]
    ('prophettrend/alpaca', 's3://b/journal/', 'alpaca', 'arn:aws:sns:us-east-1:1:prophettrend-alerts')
    """
    env = {"BROKER": cfg.broker, "MARKET_DATA": cfg.market_data,
           "JOURNAL": f"s3://{bucket}/{cfg.journal_prefix.rstrip('/')}/"}
    if topic_arn:
        env["NOTIFY_TOPIC_ARN"] = topic_arn
    if cfg.broker == "alpaca":
        if cfg.secret_backend == "ssm":
            env["ALPACA_SSM_PARAMETER"] = cfg.ssm_parameter
        else:
            env["ALPACA_SECRET_NAME"] = cfg.secret_name
    env.update(cfg.env)
    return env


def plan(cfg: DeployConfig, artifacts: Artifacts) -> list[str]:
    """What ``up`` would create or update, without calling AWS (``--dry-run``)."""
    region = cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "<region>"
    bucket = cfg.bucket or cfg.with_(region=region).default_bucket("<account>")
    sizes = {p: (f"{Path(p).stat().st_size / 1048576:.1f} MB" if Path(p).is_file() else "not built yet")
             for p in (artifacts.function_zip, artifacts.layer_zip)}
    secret = cfg.ssm_parameter if cfg.secret_backend == "ssm" else cfg.secret_name
    topic_arn = f"arn:aws:sns:{region}:<account>:{cfg.topic_name}"
    env = function_environment(cfg, bucket, topic_arn)
    journal = f"s3://{bucket}/{cfg.journal_prefix.strip('/')}/"
    bucket_line = (f"bucket      {bucket} (must exist with public access blocked, default encryption, TLS-only policy)"
                   if cfg.bucket else f"bucket      {bucket} (created if missing: public access blocked, AES256, TLS only)")
    lines = [
        bucket_line,
        f"upload      {artifacts.function_zip} ({sizes[artifacts.function_zip]}), "
        f"{artifacts.layer_zip} ({sizes[artifacts.layer_zip]}) to s3://{bucket}/deploy/{cfg.function_name}/",
        f"layer       {cfg.layer_name}: new version only if the zip's sha256 changed ({RUNTIME}, {cfg.arch})",
    ]
    if cfg.broker == "alpaca":
        lines.append(f"secret      {cfg.secret_backend} {secret} from APCA_API_KEY_ID/APCA_API_SECRET_KEY "
                     f"({'set' if all(os.environ.get(k) for k in KEY_ENV) else 'not set: the secret must already exist'})")
    role = (f"{cfg.role_arn} (given: it needs the grants listed in docs/deploy.md)" if cfg.role_arn else
            f"{cfg.role_name}: its log group, {'the secret, ' if cfg.broker == 'alpaca' else ''}"
            f"in {journal} s3:PutObject YYYY-MM-DD/* and undated/*, s3:GetObject/PutObject/DeleteObject ledger/*, lease/* and decisions/*, "
            f"s3:ListBucket on its prefix only, "
            f"sqs:SendMessage {cfg.dlq_name}, sns:Publish {cfg.topic_name}")
    lines += [
        f"queue       SQS {cfg.dlq_name}: failed asynchronous invocations",
        f"topic       SNS {topic_arn}: alarms and fill notifications",
        f"subscribe   {'email ' + cfg.alarm_email + ' (once; confirm from the mail)' if cfg.alarm_email else 'none (--alarm-email adds one)'}",
        f"role        {role}",
        f"function    {cfg.function_name}: {RUNTIME} {cfg.arch}, {HANDLER}, {cfg.memory_mb} MB, {cfg.timeout_s} s, "
        f"env {_env_values(env)}",
        f"concurrency reserved {RESERVED_CONCURRENCY}: one cycle at a time",
        "async       retries 0, on failure -> the queue",
        f"alarm       CloudWatch {cfg.alarm_name}: AWS/Lambda Errors >= 1 in 15 minutes -> the topic",
        f"alarm       CloudWatch {cfg.cycle_alarm_name}: {METRIC_NAMESPACE} {CYCLE_ERROR_METRIC} "
        f"({METRIC_DIMENSION}={cfg.function_name}) sum >= 1 in 15 minutes, missing data OK -> the topic",
        f"alarm       CloudWatch {cfg.missed_alarm_name}: {METRIC_NAMESPACE} {MISSED_DECISION_METRIC} "
        f"({METRIC_DIMENSION}={cfg.function_name}) sum >= 1 in 15 minutes: a decision's last scheduled chance "
        "passed without it (busy, error, stale lease) -> the topic",
        f"schedules   group {cfg.schedule_group}, role {cfg.scheduler_role_name}, timezone {cfg.timezone}: "
        + "; ".join(cfg.schedules),
    ]
    return lines


SECRET_NAMED = ("ALPACA_SECRET_NAME", "ALPACA_SSM_PARAMETER")


def strategy_identity(bundle) -> tuple[str, str, str]:
    """(name, class, sha256 of its source file) of the strategy a bundle deploys; a user's file is hashed as
    packed.

    >>> from deploy.strategy_bundle import strategy_bundle
    >>> name, cls, sha = strategy_identity(strategy_bundle(None, "ma-crossover", None, None))
    >>> name, cls, len(sha)
    ('ma-crossover', 'strategies.ma_crossover.MovingAverageCrossover', 12)
    """
    import inspect

    strategy = bundle.config.build()
    kind = type(strategy)
    packed = [data for path, data in bundle.files.items() if path.endswith(".py") and not path.endswith("__init__.py")]
    source = packed[0] if packed else Path(inspect.getsourcefile(kind)).read_bytes()
    module = bundle.deployed_strategy.rpartition(":")[0] if packed else kind.__module__
    return strategy.name, f"{module}.{kind.__qualname__}", hashlib.sha256(source).hexdigest()[:12]


def plan_summary(cfg: DeployConfig, bundle, artifact_notes: list[str], config_path: Path | None = None) -> list[str]:
    """The plan's head: what will trade, how, on what data and when, with the values (secrets only by where)."""
    lines = [f"artifact    {note}" for note in artifact_notes]
    if bundle is not None:
        name, kind, sha = strategy_identity(bundle)
        source = config_path
        lines += [f"strategy    {name}: {kind} (source sha256 {sha})",
                  f"config      {source or 'from the flags (no --config)'}, packed as strategy_config.toml: "
                  f"params {', '.join(f'{k}={v}' for k, v in sorted(bundle.config.params.items())) or 'defaults'}",
                  f"cadence     {_cadence_text(bundle.config.cadence)}: schedules " + "; ".join(cfg.schedules)
                  + f" ({cfg.timezone})"]
    env = {**cfg.env, "MARKET_DATA": cfg.market_data}
    live = env.get("APCA_PAPER", "true").lower() in ("false", "0", "no", "off")
    trading = env.get("TRADING_ENABLED", "true (default)")
    mode = ("LIVE: real money through Alpaca's live API" if live and cfg.broker == "alpaca"
            else "paper: Alpaca's paper API" if cfg.broker == "alpaca" else "paper: the local SQLite paper broker")
    where = "SSM Parameter Store" if cfg.secret_backend == "ssm" else "Secrets Manager"
    lines += [f"trading     {mode}, APCA_PAPER={env.get('APCA_PAPER', 'true (default)')}, TRADING_ENABLED={trading}",
              f"data        MARKET_DATA={cfg.market_data}",
              f"journal     {cfg.journal_prefix} (its ledger, lease and decisions too)"]
    if cfg.broker == "alpaca":
        lines.append(f"keys        APCA_API_KEY_ID, APCA_API_SECRET_KEY: in {where}, never in the environment")
    return lines


def _cadence_text(cadence) -> str:
    """>>> from strategies.cadence import Cadence
    >>> _cadence_text(Cadence()), _cadence_text(Cadence.parse("15min"))
    ('daily at 15:45 New York time', 'every 15min slot of the session')
    """
    d = cadence.to_dict()
    return (f"every {d['cadence']} slot of the session" if cadence.intraday
            else f"{d['cadence']} at {d['decision_time']} New York time")


def _env_values(env: dict[str, str]) -> str:
    """>>> _env_values({"B": "1", "ALPACA_SECRET_NAME": "pt/alpaca"})
    'ALPACA_SECRET_NAME=pt/alpaca (the name; the keys are in the store), B=1'
    """
    return ", ".join(f"{k}={v}" + (" (the name; the keys are in the store)" if k in SECRET_NAMED else "")
                     for k, v in sorted(env.items()))


class Deployer:
    """Runs the ``up`` steps against one account and region; each method returns the ``Step`` it took."""

    def __init__(self, cfg: DeployConfig, aws: Aws, artifacts: Artifacts, wait_s: float = 60.0):
        self.cfg, self.aws, self.artifacts = cfg, aws, artifacts
        self.wait_s = wait_s
        self.tags = {OWNER_TAG: cfg.function_name}
        self.bucket = cfg.bucket or cfg.with_(region=aws.region).default_bucket(aws.account_id)

    def run(self) -> list[Step]:
        self.artifacts.check()
        steps = [self.ensure_bucket()]
        function_key, layer_key, upload = self.upload()
        steps.append(upload)
        layer_arn, layer_step = self.ensure_layer(layer_key)
        steps.append(layer_step)
        secret_arn = None
        if self.cfg.broker == "alpaca":
            secret_arn, secret_step = self.ensure_secret()
            steps.append(secret_step)
        queue_arn, queue_step = self.ensure_queue()
        steps.append(queue_step)
        topic_arn, topic_steps = self.ensure_topic()
        steps.extend(topic_steps)
        role_arn, role_step = self.ensure_execution_role(secret_arn, queue_arn, topic_arn)
        steps.append(role_step)
        function_arn, function_step = self.ensure_function(function_key, layer_arn, role_arn, topic_arn)
        steps.append(function_step)
        steps.append(self.ensure_concurrency())
        steps.append(self.ensure_async_config(queue_arn))
        steps.extend(self.ensure_alarms(topic_arn))
        steps.extend(self.ensure_schedules(function_arn))
        return steps

    # -- storage ---------------------------------------------------------------------------------------

    def ensure_bucket(self) -> Step:
        s3 = self.aws.client("s3")
        try:
            s3.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # botocore ClientError; 403 means the name belongs to someone else
            if error_code(exc) in ("403", "AccessDenied", "Forbidden"):
                raise UserError(f"bucket {self.bucket} exists but this account cannot use it; pass --bucket") from None
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            if self.cfg.bucket:
                raise UserError(f"bucket {self.bucket} (--bucket) does not exist: create it with public access "
                                "blocked, default encryption and a TLS-only policy, or drop --bucket") from None
            return self._create_bucket(s3)
        missing = journal_bucket.missing_protections(s3, self.bucket)
        if not missing:
            return Step("bucket", "unchanged", f"{self.bucket} (public access blocked, encrypted, TLS only)")
        if not self._bucket_is_ours(s3):
            raise UserError(journal_bucket.refusal(self.bucket, missing))
        journal_bucket.protect(s3, self.bucket, missing)  # created by an older `up`: bring it up to date
        return Step("bucket", "updated", f"{self.bucket}: added {', '.join(missing)}")

    def _bucket_is_ours(self, s3) -> bool:
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=self.bucket).get("TagSet", [])}
        except Exception as exc:
            if error_code(exc) != "NoSuchTagSet":
                raise
            return False
        return tags.get(OWNER_TAG) == self.cfg.function_name and tags.get(CREATED_TAG) == "deploy"

    def _create_bucket(self, s3) -> Step:
        kwargs = {"Bucket": self.bucket}
        if self.aws.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.aws.region}
        s3.create_bucket(**kwargs)
        # Tag first: if a protection step fails, the next `up` recognises the bucket as its own and completes it.
        s3.put_bucket_tagging(Bucket=self.bucket, Tagging={"TagSet": [
            {"Key": OWNER_TAG, "Value": self.cfg.function_name}, {"Key": CREATED_TAG, "Value": "deploy"}]})
        journal_bucket.protect(s3, self.bucket, list(journal_bucket.FIXES))
        return Step("bucket", "created", f"{self.bucket} (public access blocked, AES256, TLS only)")

    def upload(self) -> tuple[str, str, Step]:
        s3 = self.aws.client("s3")
        prefix = f"deploy/{self.cfg.function_name}"
        function_key = f"{prefix}/function-{self.artifacts.function_sha[:16]}.zip"
        layer_key = f"{prefix}/{Path(self.artifacts.layer_zip).stem}-{self.artifacts.layer_sha[:16]}.zip"
        uploaded = []
        # Keys carry the content hash, so an existing key already holds these exact bytes.
        for key, path in ((function_key, self.artifacts.function_zip), (layer_key, self.artifacts.layer_zip)):
            try:
                s3.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                    raise
                s3.upload_file(str(path), self.bucket, key)
                uploaded.append(key.rsplit("/", 1)[-1])
        return function_key, layer_key, Step("upload", "updated" if uploaded else "unchanged",
                                             ", ".join(uploaded) or "both zips already in the bucket")

    # -- layer -----------------------------------------------------------------------------------------

    def layer_description(self) -> str:
        return f"{self.cfg.function_name} dependencies {RUNTIME} {self.cfg.arch} sha256:{self.artifacts.layer_sha}"

    def ensure_layer(self, layer_key: str) -> tuple[str, Step]:
        client = self.aws.client("lambda")
        wanted = self.layer_description()
        for version in _paged(client, "list_layer_versions", "LayerVersions", LayerName=self.cfg.layer_name):
            if version.get("Description") == wanted:
                return version["LayerVersionArn"], Step("layer", "unchanged",
                                                        f"{self.cfg.layer_name}:{version['Version']} (same sha256)")
        published = client.publish_layer_version(
            LayerName=self.cfg.layer_name, Description=wanted,
            Content={"S3Bucket": self.bucket, "S3Key": layer_key},
            CompatibleRuntimes=[RUNTIME], CompatibleArchitectures=[self.cfg.arch])
        return published["LayerVersionArn"], Step("layer", "published",
                                                  f"{self.cfg.layer_name}:{published['Version']}")

    # -- secret ----------------------------------------------------------------------------------------

    def _keys_json(self) -> str | None:
        key_id, secret = (os.environ.get(k, "").strip() for k in KEY_ENV)
        if bool(key_id) != bool(secret):
            raise UserError("set both APCA_API_KEY_ID and APCA_API_SECRET_KEY (or neither to keep the stored keys)")
        return json.dumps({"APCA_API_KEY_ID": key_id, "APCA_API_SECRET_KEY": secret}) if key_id else None

    def ensure_secret(self) -> tuple[str, Step]:
        keys = self._keys_json()
        if self.cfg.secret_backend == "ssm":
            return self._ensure_ssm(keys)
        sm = self.aws.client("secretsmanager")
        name = self.cfg.secret_name
        try:
            described = sm.describe_secret(SecretId=name)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            if keys is None:
                raise UserError(f"no Alpaca keys stored in {name}: set APCA_API_KEY_ID and APCA_API_SECRET_KEY "
                                "for this run, or deploy with --broker paper") from None
            created = sm.create_secret(Name=name, SecretString=keys, Description="Alpaca API keys for ProphetTrend",
                                       Tags=[{"Key": OWNER_TAG, "Value": self.cfg.function_name}])
            return created["ARN"], Step("secret", "created", f"secretsmanager {name}")
        if described.get("DeletedDate"):
            sm.restore_secret(SecretId=name)  # a previous `down` scheduled it for deletion
        if keys is not None and sm.get_secret_value(SecretId=name).get("SecretString") != keys:
            sm.put_secret_value(SecretId=name, SecretString=keys)
            return described["ARN"], Step("secret", "updated", f"secretsmanager {name}: new keys")
        return described["ARN"], Step("secret", "unchanged", f"secretsmanager {name}")

    def _ensure_ssm(self, keys: str | None) -> tuple[str, Step]:
        ssm = self.aws.client("ssm")
        name = self.cfg.ssm_parameter
        arn = self.aws.arn("ssm", f"parameter/{name.lstrip('/')}")
        try:
            current = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except Exception as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
            current = None
        if current is None and keys is None:
            raise UserError(f"no Alpaca keys stored in SSM {name}: set APCA_API_KEY_ID and APCA_API_SECRET_KEY "
                            "for this run, or deploy with --broker paper")
        if keys is None or current == keys:
            return arn, Step("secret", "unchanged", f"ssm {name}")
        ssm.put_parameter(Name=name, Value=keys, Type="SecureString", Overwrite=True,
                          Description="Alpaca API keys for ProphetTrend")
        if current is None:
            ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=name,
                                     Tags=[{"Key": OWNER_TAG, "Value": self.cfg.function_name}])
        return arn, Step("secret", "created" if current is None else "updated", f"ssm SecureString {name}")

    # -- failure handling ------------------------------------------------------------------------------

    def ensure_queue(self) -> tuple[str, Step]:
        sqs = self.aws.client("sqs")
        try:
            url = sqs.get_queue_url(QueueName=self.cfg.dlq_name)["QueueUrl"]
            action = "unchanged"
        except Exception as exc:
            if "NonExistentQueue" not in error_code(exc) and error_code(exc) != "QueueDoesNotExist":
                raise
            url = sqs.create_queue(QueueName=self.cfg.dlq_name, Attributes={"MessageRetentionPeriod": "1209600"},
                                   tags=self.tags)["QueueUrl"]
            action = "created"
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return arn, Step("queue", action, f"{self.cfg.dlq_name} (failed invocations, kept 14 days)")

    def ensure_topic(self) -> tuple[str, list[Step]]:
        """The alert topic (alarms, fill notifications) and, with ``--alarm-email``, one email subscription."""
        sns = self.aws.client("sns")
        arn = self.aws.arn("sns", self.cfg.topic_name)
        try:
            sns.get_topic_attributes(TopicArn=arn)
            steps = [Step("topic", "unchanged", self.cfg.topic_name)]
        except Exception as exc:
            if error_code(exc) not in ("NotFound", "NotFoundException"):
                raise
            arn = sns.create_topic(Name=self.cfg.topic_name,
                                   Tags=[{"Key": OWNER_TAG, "Value": self.cfg.function_name}])["TopicArn"]
            steps = [Step("topic", "created", self.cfg.topic_name)]
        if self.cfg.alarm_email:
            subscribed = [s for s in _paged(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn)
                          if s.get("Protocol") == "email" and s.get("Endpoint", "").lower() == self.cfg.alarm_email.lower()]
            if subscribed:
                steps.append(Step("subscribe", "unchanged", f"email {self.cfg.alarm_email}"))
            else:
                sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=self.cfg.alarm_email)
                steps.append(Step("subscribe", "created", f"email {self.cfg.alarm_email} (confirm from the mail)"))
            steps.extend(self.drop_other_emails(arn))
        return arn, steps

    def drop_other_emails(self, topic_arn: str) -> list[Step]:
        """A changed ``--alarm-email`` replaces the old address: unsubscribe every other email endpoint.

        SNS gives a subscription still waiting for its confirmation no ARN to unsubscribe; it lapses by itself
        (after 3 days) and never receives a message meanwhile."""
        sns = self.aws.client("sns")
        steps = []
        for sub in _paged(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic_arn):
            if sub.get("Protocol") != "email" or sub.get("Endpoint", "").lower() == self.cfg.alarm_email.lower():
                continue
            if sub.get("SubscriptionArn", "").startswith("arn:"):
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
                steps.append(Step("subscribe", "deleted", f"email {sub.get('Endpoint')} (replaced by --alarm-email)"))
            else:
                steps.append(Step("subscribe", "kept", f"email {sub.get('Endpoint')}: unconfirmed, so SNS cannot "
                                  "unsubscribe it; it lapses unconfirmed and gets no alarm"))
        return steps

    def alarm_specs(self, topic_arn: str) -> list[dict]:
        common = dict(Statistic="Sum", Period=900, EvaluationPeriods=1, Threshold=1.0,
                      ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
                      AlarmActions=[topic_arn])
        return [
            dict(AlarmName=self.cfg.alarm_name, AlarmDescription="The ProphetTrend function raised (Lambda Errors)",
                 Namespace="AWS/Lambda", MetricName="Errors",
                 Dimensions=[{"Name": "FunctionName", "Value": self.cfg.function_name}], **common),
            # A cycle that fails inside the handler returns normally, so Lambda's Errors never sees it; the
            # cycle's own metric (an Embedded Metric Format log line) does.
            dict(AlarmName=self.cfg.cycle_alarm_name, AlarmDescription="A ProphetTrend cycle ended in error",
                 Namespace=METRIC_NAMESPACE, MetricName=CYCLE_ERROR_METRIC,
                 Dimensions=[{"Name": METRIC_DIMENSION, "Value": self.cfg.function_name}], **common),
            # No silent skipped days: the last scheduled cycle of a decision (the 15:50 retry, an intraday slot)
            # says so when the decision is still unmade, whether it was busy, failed or found a stale lease.
            dict(AlarmName=self.cfg.missed_alarm_name,
                 AlarmDescription="A ProphetTrend decision slot passed without a decision (busy, error, stale lease)",
                 Namespace=METRIC_NAMESPACE, MetricName=MISSED_DECISION_METRIC,
                 Dimensions=[{"Name": METRIC_DIMENSION, "Value": self.cfg.function_name}], **common),
        ]

    def ensure_alarms(self, topic_arn: str) -> list[Step]:
        cw = self.aws.client("cloudwatch")
        steps = []
        for spec in self.alarm_specs(topic_arn):
            found = cw.describe_alarms(AlarmNames=[spec["AlarmName"]])["MetricAlarms"]
            same = bool(found) and all(found[0].get(k) == v for k, v in spec.items())
            if not same:
                cw.put_metric_alarm(**spec)
            steps.append(Step("alarm", "unchanged" if same else ("updated" if found else "created"),
                              f"{spec['AlarmName']}: {spec['MetricName']} >= 1 per 15 min -> {self.cfg.topic_name}"))
        return steps

    # -- roles -----------------------------------------------------------------------------------------

    def _ensure_role(self, name: str, trust: dict, policy: dict, description: str) -> tuple[str, str]:
        iam = self.aws.client("iam")
        try:
            role = iam.get_role(RoleName=name)["Role"]
            action = "unchanged"
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description=description,
                                   Tags=[{"Key": OWNER_TAG, "Value": self.cfg.function_name}])["Role"]
            action = "created"
        try:
            current = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
            if isinstance(current, str):
                current = json.loads(current)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            current = None
        if current != policy:
            iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
            action = "created" if action == "created" else "updated"
        return role["Arn"], action

    def ensure_execution_role(self, secret_arn: str | None, queue_arn: str, topic_arn: str) -> tuple[str, Step]:
        if self.cfg.role_arn:
            return self.cfg.role_arn, Step("role", "skipped", f"using --role-arn {self.cfg.role_arn}")
        secret_action = "ssm:GetParameter" if self.cfg.secret_backend == "ssm" else "secretsmanager:GetSecretValue"
        policy = policies.execution_policy(
            log_group_arn=self.aws.arn("logs", f"log-group:{self.cfg.log_group}"), secret_arn=secret_arn,
            secret_action=secret_action, bucket=self.bucket, journal_prefix=self.cfg.journal_prefix,
            queue_arn=queue_arn, topic_arn=topic_arn)
        arn, action = self._ensure_role(self.cfg.role_name, policies.LAMBDA_TRUST, policy,
                                        "ProphetTrend function: logs, its secret, its journal prefix")
        return arn, Step("role", action, f"{self.cfg.role_name} (least privilege inline policy)")

    # -- function --------------------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        client = self.aws.client("lambda")
        deadline = time.monotonic() + self.wait_s
        while True:
            conf = client.get_function_configuration(FunctionName=self.cfg.function_name)
            if conf.get("State", "Active") != "Pending" and conf.get("LastUpdateStatus", "Successful") != "InProgress":
                if conf.get("LastUpdateStatus") == "Failed" or conf.get("State") == "Failed":
                    raise UserError(f"Lambda could not update {self.cfg.function_name}: "
                                    f"{conf.get('LastUpdateStatusReason') or conf.get('StateReason')}")
                return
            if time.monotonic() > deadline:
                raise UserError(f"{self.cfg.function_name} is still updating after {self.wait_s:.0f} s; re-run `up`")
            time.sleep(2)

    def desired_configuration(self, layer_arn: str, role_arn: str, topic_arn: str) -> dict:
        return {
            "Role": role_arn, "Handler": HANDLER, "Runtime": RUNTIME, "MemorySize": self.cfg.memory_mb,
            "Timeout": self.cfg.timeout_s, "Layers": [layer_arn],
            "Environment": {"Variables": function_environment(self.cfg, self.bucket, topic_arn)},
            "Description": "ProphetTrend live trading cycle (deployed by python -m deploy up)",
        }

    def ensure_function(self, function_key: str, layer_arn: str, role_arn: str, topic_arn: str) -> tuple[str, Step]:
        client = self.aws.client("lambda")
        desired = self.desired_configuration(layer_arn, role_arn, topic_arn)
        try:
            current = client.get_function_configuration(FunctionName=self.cfg.function_name)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            created = self._create_function(desired, function_key)
            return created["FunctionArn"], Step("function", "created", f"{self.cfg.function_name} "
                                                f"({self.cfg.memory_mb} MB, {self.cfg.timeout_s} s, {self.cfg.arch})")
        changes = []
        if current.get("CodeSha256") != self.artifacts.function_code_sha or current.get("Architectures") != [self.cfg.arch]:
            client.update_function_code(FunctionName=self.cfg.function_name, S3Bucket=self.bucket, S3Key=function_key,
                                        Architectures=[self.cfg.arch])
            changes.append("code")
            self._wait_ready()
        now = {
            "Role": current.get("Role"), "Handler": current.get("Handler"), "Runtime": current.get("Runtime"),
            "MemorySize": current.get("MemorySize"), "Timeout": current.get("Timeout"),
            "Layers": [layer["Arn"] for layer in current.get("Layers", [])],
            "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
            "Description": current.get("Description"),
        }
        differing = sorted(k for k in desired if desired[k] != now[k])
        if differing:
            client.update_function_configuration(FunctionName=self.cfg.function_name, **desired)
            changes.extend(differing)
            self._wait_ready()
        return current["FunctionArn"], Step("function", "updated" if changes else "unchanged",
                                            f"{self.cfg.function_name}" + (f": {', '.join(changes)}" if changes else ""))

    def _create_function(self, desired: dict, function_key: str) -> dict:
        client = self.aws.client("lambda")
        for attempt in range(8):
            try:
                created = client.create_function(
                    FunctionName=self.cfg.function_name, Code={"S3Bucket": self.bucket, "S3Key": function_key},
                    Architectures=[self.cfg.arch], Tags=self.tags, **desired)
                break
            except Exception as exc:
                # A new IAM role takes a few seconds to become assumable by Lambda.
                if error_code(exc) != "InvalidParameterValueException" or "role" not in str(exc).lower() or attempt == 7:
                    raise
                time.sleep(2 + 2 * attempt)
        self._wait_ready()
        return created

    def ensure_concurrency(self) -> Step:
        client = self.aws.client("lambda")
        current = client.get_function_concurrency(FunctionName=self.cfg.function_name).get("ReservedConcurrentExecutions")
        if current != RESERVED_CONCURRENCY:
            try:
                client.put_function_concurrency(FunctionName=self.cfg.function_name,
                                                ReservedConcurrentExecutions=RESERVED_CONCURRENCY)
            except Exception as exc:
                # New accounts often have a quota of 10 concurrent executions, all of which must stay unreserved.
                if "UnreservedConcurrentExecution" not in str(exc):
                    raise
                raise UserError(
                    f"cannot reserve {RESERVED_CONCURRENCY} concurrent execution for {self.cfg.function_name}: the "
                    "account's Lambda quota leaves none to reserve; ask for a higher 'Concurrent executions' quota "
                    "(Service Quotas, AWS Lambda) and re-run up (it stopped before the alarms and schedules)") from None
        return Step("concurrency", "unchanged" if current == RESERVED_CONCURRENCY else "updated",
                    f"reserved {RESERVED_CONCURRENCY} (one cycle at a time)")

    def ensure_async_config(self, queue_arn: str) -> Step:
        # A failed cycle must not be replayed blindly by Lambda: the next scheduled cycle looks at the broker
        # afresh, and the failed event lands in the queue for a human.
        client = self.aws.client("lambda")
        wanted = {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 900,
                  "DestinationConfig": {"OnFailure": {"Destination": queue_arn}}}
        try:
            current = client.get_function_event_invoke_config(FunctionName=self.cfg.function_name)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            current = {}
        same = (current.get("MaximumRetryAttempts") == 0 and current.get("MaximumEventAgeInSeconds") == 900
                and current.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination") == queue_arn)
        if not same:
            client.put_function_event_invoke_config(FunctionName=self.cfg.function_name, **wanted)
        return Step("async", "unchanged" if same else "updated",
                    "retries 0, max event age 900 s, on failure -> " + self.cfg.dlq_name)

    # -- schedule --------------------------------------------------------------------------------------

    def ensure_schedules(self, function_arn: str) -> list[Step]:
        role_arn, role_action = self._ensure_role(
            self.cfg.scheduler_role_name, policies.SCHEDULER_TRUST, policies.scheduler_policy(function_arn),
            "EventBridge Scheduler: invoke the ProphetTrend function")
        steps = [Step("role", role_action, f"{self.cfg.scheduler_role_name} (lambda:InvokeFunction on the function)")]
        sched = self.aws.client("scheduler")
        group = self.cfg.schedule_group
        try:
            sched.get_schedule_group(Name=group)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            sched.create_schedule_group(Name=group, Tags=[{"Key": OWNER_TAG, "Value": self.cfg.function_name}])
            steps.append(Step("schedules", "created", f"group {group}"))
        listed = _paged(sched, "list_schedules", "Schedules", GroupName=group)
        existing = {s["Name"] for s in listed}
        state = _kept_state(listed)  # a paused bot stays paused (deploy pause/resume)
        wanted = {}
        for i, expression in enumerate(self.cfg.schedules):
            wanted[f"{self.cfg.function_name}-{i}"] = expression
        for name, expression in wanted.items():
            spec = dict(
                Name=name, GroupName=group, ScheduleExpression=expression,
                ScheduleExpressionTimezone=self.cfg.timezone, FlexibleTimeWindow={"Mode": "OFF"}, State=state,
                Description="ProphetTrend trading cycle",
                Target={"Arn": function_arn, "RoleArn": role_arn, "Input": SCHEDULE_INPUT,
                        "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 900}})
            if name in existing:
                current = sched.get_schedule(Name=name, GroupName=group)
                same = (current.get("ScheduleExpression") == expression
                        and current.get("ScheduleExpressionTimezone") == self.cfg.timezone
                        and current.get("Target", {}).get("Arn") == function_arn
                        and current.get("State") == state)
                if not same:
                    sched.update_schedule(**spec)
                steps.append(Step("schedule", "unchanged" if same else "updated", f"{name}: {expression} {self.cfg.timezone}"))
            else:
                sched.create_schedule(**spec)
                steps.append(Step("schedule", "created", f"{name}: {expression} {self.cfg.timezone}"))
        for stale in sorted(existing - set(wanted)):
            sched.delete_schedule(Name=stale, GroupName=group)
            steps.append(Step("schedule", "deleted", f"{stale} (no longer in --schedule)"))
        return steps


def _kept_state(listed: list[dict]) -> str:
    """DISABLED when every existing schedule is (``deploy pause``), else ENABLED.

    >>> _kept_state([{"State": "DISABLED"}]), _kept_state([]), _kept_state([{"State": "ENABLED"}])
    ('DISABLED', 'ENABLED', 'ENABLED')
    """
    return "DISABLED" if listed and all(s.get("State") == "DISABLED" for s in listed) else "ENABLED"


def _paged(client, operation: str, key: str, **kwargs) -> list[dict]:
    if client.can_paginate(operation):
        return [item for page in client.get_paginator(operation).paginate(**kwargs) for item in page.get(key, [])]
    return client.__getattribute__(operation)(**kwargs).get(key, [])


def up(cfg: DeployConfig, artifacts: Artifacts, aws: Aws | None = None) -> list[Step]:
    """Create or update every resource; returns the steps taken (see the module docstring)."""
    return Deployer(cfg, aws or Aws(cfg), artifacts).run()
