"""``python -m deploy down``: remove what ``up`` created; the journal bucket stays unless ``--delete-bucket``.

Every step tolerates "not found", so ``down`` can be re-run after a partial failure. Roles and the bucket are
deleted only when they carry the tag ``up`` put on them, so a ``--role-arn`` or ``--bucket`` of the user's is
never touched. The secret is scheduled for deletion with a 7-day recovery window (``up`` restores it).

Example:
    >>> print(Step("function", "deleted", "prophettrend"))
    function    deleted   prophettrend
"""

from __future__ import annotations

from deploy.aws import Aws, error_code
from deploy.config import DeployConfig
from deploy.up import CREATED_TAG, OWNER_TAG, Step, _paged

NOT_FOUND = ("ResourceNotFoundException", "NoSuchEntity", "NotFound", "404", "NoSuchBucket", "ParameterNotFound",
             "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFound")


def _gone(exc: Exception) -> bool:
    return error_code(exc) in NOT_FOUND


def down(cfg: DeployConfig, aws: Aws | None = None, delete_bucket: bool = False, delete_secret: bool = True) -> list[Step]:
    """Delete the schedules, function, layer versions, alarms, topic, queue, roles and secret of ``cfg``."""
    aws = aws or Aws(cfg)
    steps: list[Step] = []

    sched = aws.client("scheduler")
    try:
        sched.get_schedule_group(Name=cfg.schedule_group)  # raises when gone: deleting a missing group is an error
        for s in _paged(sched, "list_schedules", "Schedules", GroupName=cfg.schedule_group):
            sched.delete_schedule(Name=s["Name"], GroupName=cfg.schedule_group)
            steps.append(Step("schedule", "deleted", s["Name"]))
        sched.delete_schedule_group(Name=cfg.schedule_group)
        steps.append(Step("schedules", "deleted", f"group {cfg.schedule_group}"))
    except Exception as exc:
        if not _gone(exc):
            raise

    lam = aws.client("lambda")
    try:
        lam.delete_function(FunctionName=cfg.function_name)
        steps.append(Step("function", "deleted", cfg.function_name))
    except Exception as exc:
        if not _gone(exc):
            raise
    for version in _paged(lam, "list_layer_versions", "LayerVersions", LayerName=cfg.layer_name):
        lam.delete_layer_version(LayerName=cfg.layer_name, VersionNumber=version["Version"])
        steps.append(Step("layer", "deleted", f"{cfg.layer_name}:{version['Version']}"))

    cw = aws.client("cloudwatch")
    for name in cfg.alarm_names:
        if cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
            cw.delete_alarms(AlarmNames=[name])
            steps.append(Step("alarm", "deleted", name))
    steps.extend(_delete_topics(cfg, aws))

    sqs = aws.client("sqs")
    try:
        url = sqs.get_queue_url(QueueName=cfg.dlq_name)["QueueUrl"]
        sqs.delete_queue(QueueUrl=url)
        steps.append(Step("queue", "deleted", cfg.dlq_name))
    except Exception as exc:
        if not _gone(exc):
            raise

    iam = aws.client("iam")
    for role in (cfg.role_name, cfg.scheduler_role_name):
        try:
            tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role).get("Tags", [])}
            if tags.get(OWNER_TAG) != cfg.function_name:
                steps.append(Step("role", "kept", f"{role} (not created by deploy up)"))
                continue
            for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                iam.delete_role_policy(RoleName=role, PolicyName=policy)
            iam.delete_role(RoleName=role)
            steps.append(Step("role", "deleted", role))
        except Exception as exc:
            if not _gone(exc):
                raise

    if delete_secret:
        steps.extend(_delete_secret(cfg, aws))

    bucket = cfg.bucket or cfg.with_(region=aws.region).default_bucket(aws.account_id)
    steps.append(_bucket(aws, cfg, bucket, delete_bucket))
    return steps


def _delete_topics(cfg: DeployConfig, aws: Aws) -> list[Step]:
    """The alert topic and its subscriptions; also the topic an older ``up`` named after the alarm."""
    sns = aws.client("sns")
    out = []
    existing = {t["TopicArn"] for t in _paged(sns, "list_topics", "Topics")}
    for name in (cfg.topic_name, cfg.alarm_name):
        arn = aws.arn("sns", name)
        if arn not in existing:
            continue
        for sub in _paged(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn):
            if sub["SubscriptionArn"].startswith("arn:"):  # a pending one has no ARN yet; it goes with the topic
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
                out.append(Step("subscribe", "deleted", f"{sub.get('Protocol')} {sub.get('Endpoint')}"))
        sns.delete_topic(TopicArn=arn)
        out.append(Step("topic", "deleted", name))
    return out


def _delete_secret(cfg: DeployConfig, aws: Aws) -> list[Step]:
    out = []
    try:
        sm = aws.client("secretsmanager")
        described = sm.describe_secret(SecretId=cfg.secret_name)
        if not described.get("DeletedDate"):
            sm.delete_secret(SecretId=cfg.secret_name, RecoveryWindowInDays=7)
            out.append(Step("secret", "deleted", f"secretsmanager {cfg.secret_name} (recoverable for 7 days)"))
    except Exception as exc:
        if not _gone(exc):
            raise
    try:
        aws.client("ssm").delete_parameter(Name=cfg.ssm_parameter)
        out.append(Step("secret", "deleted", f"ssm {cfg.ssm_parameter}"))
    except Exception as exc:
        if not _gone(exc):
            raise
    return out


def _bucket(aws: Aws, cfg: DeployConfig, bucket: str, delete: bool) -> Step:
    s3 = aws.client("s3")
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
    except Exception as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            return Step("bucket", "deleted", f"{bucket} (already gone)")
        tags = {}
    ours = tags.get(OWNER_TAG) == cfg.function_name and tags.get(CREATED_TAG) == "deploy"
    if not delete or not ours:
        # The deploy artifacts are removed either way; the journal is the trading record and stays.
        for obj in _paged(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=f"deploy/{cfg.function_name}/"):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        why = "not created by deploy up" if delete and not ours else "journal kept; --delete-bucket removes it"
        return Step("bucket", "kept", f"{bucket} ({why})")
    for obj in _paged(s3, "list_object_versions", "Versions", Bucket=bucket):
        s3.delete_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])
    for obj in _paged(s3, "list_objects_v2", "Contents", Bucket=bucket):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    return Step("bucket", "deleted", bucket)
