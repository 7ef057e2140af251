"""The journal bucket's protections: public access blocked, default encryption, TLS-only access.

``up`` sets all three on a bucket it creates (and repairs them on a bucket it created earlier). A bucket the
user passes with ``--bucket`` is only checked: ``up`` refuses it with one line naming what is missing, and
never changes a bucket it does not own.

Example:
    >>> policy = tls_only_policy("my-journal")
    >>> statement = policy["Statement"][0]
    >>> statement["Effect"], statement["Condition"], statement["Resource"]
    ('Deny', {'Bool': {'aws:SecureTransport': 'false'}}, ['arn:aws:s3:::my-journal', 'arn:aws:s3:::my-journal/*'])
    >>> denies_plain_http(policy, "my-journal")
    True
    >>> denies_plain_http({"Statement": []}, "my-journal")
    False
"""

from __future__ import annotations

import json
from typing import Any

from deploy.aws import error_code

PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}
ENCRYPTION_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
TLS_SID = "DenyPlainHttp"

# What each missing protection is called in messages, and the AWS CLI call that adds it.
FIXES = {
    "public access block": "aws s3api put-public-access-block --bucket {b} --public-access-block-configuration "
                           "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true",
    "default encryption": "aws s3api put-bucket-encryption --bucket {b} --server-side-encryption-configuration "
                          "'{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"AES256\"}}}}]}}'",
    "TLS-only policy": "a bucket policy statement denying s3:* when aws:SecureTransport is false",
}


def tls_only_policy(bucket: str) -> dict[str, Any]:
    """A bucket policy that denies every request not made over TLS."""
    return {"Version": "2012-10-17", "Statement": [tls_statement(bucket)]}


def tls_statement(bucket: str) -> dict[str, Any]:
    return {"Sid": TLS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def denies_plain_http(policy: dict[str, Any], bucket: str) -> bool:
    """True when one statement denies everyone every S3 action on the bucket's objects without TLS."""
    for s in _as_list(policy.get("Statement", [])):
        principal = s.get("Principal")
        everyone = principal == "*" or (isinstance(principal, dict) and _as_list(principal.get("AWS")) == ["*"])
        condition = s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        insecure = [str(v).lower() for v in _as_list(condition)] == ["false"]
        resources = set(_as_list(s.get("Resource", [])))
        if (s.get("Effect") == "Deny" and everyone and insecure and "s3:*" in _as_list(s.get("Action"))
                and f"arn:aws:s3:::{bucket}/*" in resources):
            return True
    return False


def current_policy(s3, bucket: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception as exc:
        if error_code(exc) == "NoSuchBucketPolicy":
            return None
        raise


def missing_protections(s3, bucket: str) -> list[str]:
    """The protections ``bucket`` lacks, in the order they are checked (``[]`` when it is safe)."""
    missing = []
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except Exception as exc:
        if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        block = {}
    if not all(block.get(k) for k in PUBLIC_ACCESS_BLOCK):
        missing.append("public access block")
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except Exception as exc:
        if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    if not any(r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") in ENCRYPTION_ALGORITHMS
               for r in rules):
        missing.append("default encryption")
    if not denies_plain_http(current_policy(s3, bucket) or {}, bucket):
        missing.append("TLS-only policy")
    return missing


def refusal(bucket: str, missing: list[str]) -> str:
    """The one-line refusal for a bucket of the user's that lacks protections."""
    fixes = "; ".join(FIXES[m].format(b=bucket) for m in missing)
    return (f"bucket {bucket} lacks {', '.join(missing)}; up changes no bucket it did not create: add "
            f"{'them' if len(missing) > 1 else 'it'} yourself ({fixes}), or drop --bucket to let up create one")


def protect(s3, bucket: str, missing: list[str]) -> None:
    """Add the ``missing`` protections to a bucket ``up`` owns; an existing policy keeps its other statements."""
    if "public access block" in missing:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    if "default encryption" in missing:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    if "TLS-only policy" in missing:
        policy = current_policy(s3, bucket) or {"Version": "2012-10-17", "Statement": []}
        others = [s for s in _as_list(policy.get("Statement", [])) if s.get("Sid") != TLS_SID]
        policy["Statement"] = [*others, tls_statement(bucket)]
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
