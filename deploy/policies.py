"""IAM documents for the function's execution role and the scheduler's role: least privilege, by ARN.

The function may write its own log group, read its one Alpaca secret (or SSM parameter), read and write the
journal prefix of its bucket, and send failed events to its own queue. Nothing else.

Example:
    >>> doc = execution_policy(log_group_arn="arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f",
    ...     secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:f/alpaca-AbCdEf", secret_action="secretsmanager:GetSecretValue",
    ...     bucket="b", journal_prefix="journal/", queue_arn="arn:aws:sqs:us-east-1:1:f-failures")
    >>> sorted(a for s in doc["Statement"] for a in s["Action"])[:3]
    ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents']
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
                     journal_prefix: str, queue_arn: str | None) -> dict[str, Any]:
    """The inline policy of the function's role (see the module docstring)."""
    prefix = journal_prefix.rstrip("/") + "/"
    statements: list[dict[str, Any]] = [
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": log_group_arn},
        {"Sid": "OwnLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "JournalObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"},
        {"Sid": "JournalListing", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
    ]
    if secret_arn:
        statements.append({"Sid": "AlpacaKeys", "Effect": "Allow", "Action": [secret_action], "Resource": secret_arn})
    if queue_arn:
        statements.append({"Sid": "FailedEvents", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": queue_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def scheduler_policy(function_arn: str) -> dict[str, Any]:
    """The scheduler may invoke this one function (and its versions) and nothing else.

    >>> scheduler_policy("arn:aws:lambda:us-east-1:1:function:f")["Statement"][0]["Resource"]
    ['arn:aws:lambda:us-east-1:1:function:f', 'arn:aws:lambda:us-east-1:1:function:f:*']
    """
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeTheFunction", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
         "Resource": [function_arn, f"{function_arn}:*"]}]}
