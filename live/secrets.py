"""Alpaca keys from the environment, AWS Secrets Manager or SSM Parameter Store; never logged or returned.

Sources, first match wins:

1. ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` (alpaca-py's own names);
2. ``ALPACA_SECRET_NAME``: a Secrets Manager secret (name or ARN) whose string is JSON
   ``{"APCA_API_KEY_ID": "...", "APCA_API_SECRET_KEY": "..."}``;
3. ``ALPACA_SSM_PARAMETER``: an SSM parameter (a SecureString) holding the same JSON.

:class:`AlpacaKeys` hides its values from ``repr``; :func:`secret_values` lists them so logs and the journal can
redact any accidental occurrence.

Example:
    >>> keys = load_alpaca_keys({"APCA_API_KEY_ID": "PKDEMO", "APCA_API_SECRET_KEY": "s3cr3t"})
    >>> keys
    AlpacaKeys(source='environment', key_id='PK***', secret_key='***')
    >>> secret_values(keys)
    ['PKDEMO', 's3cr3t']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

from live.config import ConfigError

_ID_NAMES = ("APCA_API_KEY_ID", "key_id", "api_key", "ALPACA_API_KEY")
_SECRET_NAMES = ("APCA_API_SECRET_KEY", "secret_key", "api_secret", "ALPACA_SECRET_KEY")


class SecretsError(ConfigError):
    """The keys could not be read; the message names the source, never a value."""


@dataclass(frozen=True, repr=False)
class AlpacaKeys:
    key_id: str
    secret_key: str
    source: str

    def __repr__(self) -> str:
        return f"AlpacaKeys(source={self.source!r}, key_id={self.key_id[:2] + '***'!r}, secret_key='***')"

    __str__ = __repr__


def secret_values(keys: AlpacaKeys | None) -> list[str]:
    """The strings that must never appear in logs, the journal or a summary."""
    return [] if keys is None else [v for v in (keys.key_id, keys.secret_key) if v]


def load_alpaca_keys(env: Mapping[str, str]) -> AlpacaKeys:
    """The keys from the first configured source; raises :class:`SecretsError` (one line) when unavailable."""
    key_id, secret = env.get("APCA_API_KEY_ID", "").strip(), env.get("APCA_API_SECRET_KEY", "").strip()
    if key_id or secret:
        if not (key_id and secret):
            missing = "APCA_API_SECRET_KEY" if key_id else "APCA_API_KEY_ID"
            raise SecretsError(f"{missing} is not set (both APCA_API_KEY_ID and APCA_API_SECRET_KEY are needed)")
        return AlpacaKeys(key_id, secret, "environment")
    if env.get("ALPACA_SECRET_NAME", "").strip():
        name = env["ALPACA_SECRET_NAME"].strip()
        text = _aws_read("secretsmanager", name, lambda c: c.get_secret_value(SecretId=name)["SecretString"])
        return _parse(text, f"secretsmanager:{name}")
    if env.get("ALPACA_SSM_PARAMETER", "").strip():
        name = env["ALPACA_SSM_PARAMETER"].strip()
        text = _aws_read("ssm", name, lambda c: c.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
        return _parse(text, f"ssm:{name}")
    raise SecretsError("no Alpaca keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, "
                       "or ALPACA_SECRET_NAME (Secrets Manager) or ALPACA_SSM_PARAMETER (SSM)")


def _aws_read(service: str, name: str, call) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(boto3.client(service))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SecretsError(f"cannot read Alpaca keys from {service} {name!r}: {code}") from None
    except (BotoCoreError, KeyError) as exc:
        raise SecretsError(f"cannot read Alpaca keys from {service} {name!r}: {type(exc).__name__}") from None


def _parse(text: str, source: str) -> AlpacaKeys:
    try:
        values = json.loads(text)
    except (TypeError, ValueError):
        values = None
    if not isinstance(values, dict):
        raise SecretsError(f"{source} must hold JSON like {{\"APCA_API_KEY_ID\": ..., \"APCA_API_SECRET_KEY\": ...}}")
    key_id = next((str(values[k]) for k in _ID_NAMES if values.get(k)), "")
    secret = next((str(values[k]) for k in _SECRET_NAMES if values.get(k)), "")
    if not (key_id and secret):
        raise SecretsError(f"{source} lacks APCA_API_KEY_ID or APCA_API_SECRET_KEY")
    return AlpacaKeys(key_id, secret, source)
