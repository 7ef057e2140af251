"""boto3 clients for the deploy commands, all pointed at one region/profile/endpoint (AWS, moto or LocalStack).

Example:
    >>> from deploy.config import DeployConfig
    >>> aws = Aws(DeployConfig(region="eu-west-1", endpoint_url="http://127.0.0.1:5000"))
    >>> aws.region
    'eu-west-1'
"""

from __future__ import annotations

import functools

from clitools import UserError
from deploy.config import DeployConfig


def error_code(exc: Exception) -> str:
    """The AWS error code of a ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class Aws:
    """Lazily created clients sharing one ``boto3.Session``; errors in setup become one-line ``UserError``."""

    def __init__(self, cfg: DeployConfig):
        import boto3
        from botocore.exceptions import ProfileNotFound

        self.cfg = cfg
        try:
            self.session = boto3.Session(profile_name=cfg.profile, region_name=cfg.region)
        except ProfileNotFound as exc:
            raise UserError(str(exc)) from None
        if not self.session.region_name:
            raise UserError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
        self.region = self.session.region_name

    @functools.lru_cache(maxsize=None)
    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.cfg.endpoint_url, region_name=self.region)

    @functools.cached_property
    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account_id}:{resource}"


def aws_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the CLI reports as one line (credentials, connection, AWS API errors)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)
