"""IAM documents for the function's execution role and the scheduler's role: least privilege, by ARN.

The function may write its own log group, read its one Alpaca secret (or SSM parameter), send failed events to
its own queue and publish to its own topic. In S3 it may only do what the journal needs:

- ``PutObject`` of a cycle record, ``<prefix>/YYYY-MM-DD/<cycle_id>.json`` (``<prefix>/undated/`` without a date);
- ``GetObject``, ``PutObject`` (conditional writes, ``If-None-Match``/``If-Match``, need nothing more) and
  ``DeleteObject`` of the per-strategy ledger ``<prefix>/ledger/<strategy>.json``, lease
  ``<prefix>/lease/<strategy>.json`` and daily decision marks ``<prefix>/decisions/<strategy>/<date>.json``
  (``live.store``);
- ``ListBucket`` on the bucket, for keys under its own prefix only (``s3:prefix`` condition). The function never
  lists for its own sake, but without it S3 answers a GET of a *missing* key with 403 AccessDenied instead of
  404, and the first cycle of a fresh deploy could not tell its absent ledger from a denied one (live.store
  names the missing permission when a read is denied).

Example:
    >>> doc = execution_policy(log_group_arn="arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f",
    ...     secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:f/alpaca-AbCdEf", secret_action="secretsmanager:GetSecretValue",
    ...     bucket="b", journal_prefix="journal/", queue_arn="arn:aws:sqs:us-east-1:1:f-failures",
    ...     topic_arn="arn:aws:sns:us-east-1:1:f-alerts")
    >>> sorted({a for s in doc["Statement"] for a in s["Action"] if a.startswith("s3:")})
    ['s3:DeleteObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject']
    >>> [(s["Resource"], s["Condition"]) for s in doc["Statement"] if "s3:ListBucket" in s["Action"]]
    [('arn:aws:s3:::b', {'StringLike': {'s3:prefix': ['journal/*']}})]
    >>> [s["Resource"] for s in doc["Statement"] if "s3:GetObject" in s["Action"]]
    [['arn:aws:s3:::b/journal/ledger/*', 'arn:aws:s3:::b/journal/lease/*', 'arn:aws:s3:::b/journal/decisions/*']]
    >>> any(s["Resource"] == "*" for s in doc["Statement"])
    False
"""

from __future__ import annotations

from typing import Any

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
SCHEDULER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def execution_policy(log_group_arn: str, secret_arn: str | None, secret_action: str, bucket: str,
                     journal_prefix: str, queue_arn: str | None, topic_arn: str | None = None) -> dict[str, Any]:
    """The inline policy of the function's role (see the module docstring)."""
    prefix = journal_prefix.strip("/") + "/"
    journal = f"arn:aws:s3:::{bucket}/{prefix}"
    statements: list[dict[str, Any]] = [
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": log_group_arn},
        {"Sid": "OwnLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        # `?` matches one character in an IAM resource: only dated cycle records, plus the folder live/journal.py
        # uses for a record with no date (an event it could not read).
        {"Sid": "CycleRecords", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": [f"{journal}????-??-??/*", f"{journal}undated/*"]},
        {"Sid": "LedgerAndLease", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"{journal}ledger/*", f"{journal}lease/*", f"{journal}decisions/*"]},
        # S3 answers a GET of a missing key with 404 only to a caller that may list it (else 403)
        {"Sid": "OwnPrefixListing", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": f"arn:aws:s3:::{bucket}", "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
    ]
    if secret_arn:
        statements.append({"Sid": "AlpacaKeys", "Effect": "Allow", "Action": [secret_action], "Resource": secret_arn})
    if queue_arn:
        statements.append({"Sid": "FailedEvents", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": queue_arn})
    if topic_arn:
        statements.append({"Sid": "Notify", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": topic_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def scheduler_policy(function_arn: str) -> dict[str, Any]:
    """The scheduler may invoke this one function (and its versions) and nothing else.

    >>> scheduler_policy("arn:aws:lambda:us-east-1:1:function:f")["Statement"][0]["Resource"]
    ['arn:aws:lambda:us-east-1:1:function:f', 'arn:aws:lambda:us-east-1:1:function:f:*']
    """
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeTheFunction", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
         "Resource": [function_arn, f"{function_arn}:*"]}]}
