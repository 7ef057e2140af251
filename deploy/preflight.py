"""Before ``deploy up`` builds or changes anything: is there a region, and do the credentials work?

One STS ``GetCallerIdentity`` call (it needs no permission) with short timeouts and a single retry, so a missing
or wrong credential is one ``error:`` line within seconds, not after a 90-second layer build.

Example:
    >>> print(Identity("123456789012", "arn:aws:iam::123456789012:user/me", "us-east-1"))
    account 123456789012 as arn:aws:iam::123456789012:user/me, region us-east-1
"""

from __future__ import annotations

from dataclasses import dataclass

from clitools import UserError
from deploy.aws import Aws, error_code
from deploy.config import DeployConfig

# Seconds: STS answers in well under a second; a dead endpoint must not stall `up` for botocore's 60 s default.
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 5
REFUSED_CODES = ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException",
                 "AccessDenied", "InvalidAccessKeyId", "AuthFailure", "RequestExpired")


@dataclass(frozen=True)
class Identity:
    """Who ``up`` deploys as, and where."""

    account: str
    arn: str
    region: str

    def __str__(self) -> str:
        return f"account {self.account} as {self.arn}, region {self.region}"


def check_access(cfg: DeployConfig) -> Identity:
    """The caller's identity; a one-line :class:`UserError` for no region, no credentials, refused credentials
    or an unreachable endpoint."""
    from botocore.config import Config
    from botocore.exceptions import (ConnectTimeoutError, EndpointConnectionError, NoCredentialsError,
                                     PartialCredentialsError, ReadTimeoutError)

    aws = Aws(cfg)  # raises "no AWS region" first
    config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    retries={"total_max_attempts": 2, "mode": "standard"})
    sts = aws.session.client("sts", endpoint_url=cfg.endpoint_url, region_name=aws.region, config=config)
    try:
        who = sts.get_caller_identity()
    except (NoCredentialsError, PartialCredentialsError):
        raise UserError("no AWS credentials found: pass --profile NAME, or set AWS_PROFILE or "
                        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (nothing was built or changed)") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise UserError(f"cannot reach AWS STS in {aws.region}: {exc} (nothing was built or changed)") from None
    except Exception as exc:
        code = error_code(exc)
        if code in REFUSED_CODES:
            raise UserError(f"AWS refused these credentials ({code}): check --profile or AWS_ACCESS_KEY_ID "
                            "(nothing was built or changed)") from None
        raise
    return Identity(str(who["Account"]), str(who.get("Arn", "")), aws.region)
