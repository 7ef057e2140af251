"""``invoke`` (one cycle now, synchronously) and ``logs`` (tail CloudWatch) for a deployed function.

Example:
    >>> decode_payload(b'{"status": "ok"}')
    {'status': 'ok'}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterator

from clitools import UserError
from deploy.aws import Aws, error_code
from deploy.config import DeployConfig


def decode_payload(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", "replace")


def invoke(cfg: DeployConfig, event: dict, aws: Aws | None = None) -> Any:
    """Run one cycle now (``RequestResponse``) and return the handler's summary; a failed cycle is a ``UserError``."""
    aws = aws or Aws(cfg)
    try:
        response = aws.client("lambda").invoke(FunctionName=cfg.function_name, InvocationType="RequestResponse",
                                               Payload=json.dumps(event).encode())
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise UserError(f"function {cfg.function_name} is not deployed; run `python -m deploy up`") from None
        if error_code(exc) == "TooManyRequestsException":
            # Reserved concurrency 1: a scheduled cycle is running, and a second one must not overlap it.
            raise UserError(f"a cycle of {cfg.function_name} is running now (one at a time, reserved concurrency 1); "
                            "try again when it has finished") from None
        raise
    payload = decode_payload(response["Payload"].read())
    if response.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise UserError(f"the cycle failed in Lambda: {message}")
    return payload


def log_events(cfg: DeployConfig, since_minutes: float, aws: Aws | None = None,
               follow: bool = False, poll_s: float = 5.0) -> Iterator[str]:
    """The function's log lines since ``since_minutes`` ago; with ``follow`` keeps polling until Ctrl-C."""
    aws = aws or Aws(cfg)
    logs = aws.client("logs")
    start = int((time.time() - since_minutes * 60) * 1000)
    seen: set[str] = set()
    while True:
        try:
            pages = logs.get_paginator("filter_log_events").paginate(logGroupName=cfg.log_group, startTime=start)
            events = [e for page in pages for e in page.get("events", [])]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise UserError(f"no logs yet: log group {cfg.log_group} does not exist (has the function run?)") from None
            raise
        for event in sorted(events, key=lambda e: (e["timestamp"], e.get("eventId", ""))):
            if event.get("eventId") in seen:
                continue
            seen.add(event.get("eventId", ""))
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["timestamp"] / 1000))
            yield f"{stamp}Z {event['message'].rstrip()}"
            start = max(start, event["timestamp"])
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(poll_s)
