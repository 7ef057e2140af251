"""The deployed function's journal: where it is (``s3://<bucket>/<journal prefix>``), its last cycle for
``deploy status``, and ``python -m deploy report`` (the live report over it, see ``live.report``).

Example:
    >>> from deploy.config import DeployConfig
    >>> journal_url(DeployConfig(bucket="b"))
    's3://b/journal'
"""

from __future__ import annotations

from typing import Any

from deploy.aws import Aws, error_code
from deploy.config import DeployConfig


def journal_url(cfg: DeployConfig, aws: Aws | None = None) -> str:
    """The journal ``up`` points the function at (``JOURNAL``), with the bucket ``up`` defaults to."""
    bucket = cfg.bucket or cfg.with_(region=aws.region).default_bucket(aws.account_id)
    return f"s3://{bucket}/{cfg.journal_prefix.strip('/')}"


def deployed_journal_url(cfg: DeployConfig, aws: Aws) -> str:
    """The deployed function's ``JOURNAL`` (paper and live have their own), else where ``up`` would put it."""
    try:
        conf = aws.client("lambda").get_function_configuration(FunctionName=cfg.function_name)
        journal = conf.get("Environment", {}).get("Variables", {}).get("JOURNAL", "")
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        journal = ""
    return journal.rstrip("/") if journal.startswith("s3://") else journal_url(cfg, aws)


def last_cycle(cfg: DeployConfig, aws: Aws, journal: str | None = None) -> dict[str, Any] | None:
    """Time, status, error and orders of the newest cycle in the journal; None when there is none (or no bucket).

    Day folders sort by date and cycle ids by time, so the last key of the last day folder is the newest cycle.
    """
    from botocore.exceptions import ClientError

    from live.journal_read import DAY_FOLDER, error_text, filled_qty, orders

    url = journal or journal_url(cfg, aws)
    bucket, _, prefix = url[len("s3://"):].partition("/")
    s3 = aws.client("s3")
    try:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
                for o in page.get("Contents", []) if DAY_FOLDER.match(o["Key"][len(prefix) + 1:])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "AccessDenied"):
            return None
        raise
    dated = sorted(k for k in keys if "/undated/" not in f"/{k}")
    if not dated:
        return None
    import json

    unreadable = []
    for key in reversed(dated[-5:]):  # a torn newest object must not hide the cycle before it
        try:
            record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ValueError:
            record = None
        if not isinstance(record, dict) or "status" not in record:
            unreadable.append(key)
            continue
        return {"key": key, "now": record.get("now"), "status": record.get("status"),
                "error": error_text(record), "reason": record.get("reason"), "unreadable_newer": unreadable,
                "orders": [{"symbol": o["symbol"], "side": o["side"], "qty": o.get("qty"), "status": o.get("status"),
                            "filled_qty": filled_qty(o)} for o in orders(record)]}
    return {"key": dated[-1], "unreadable": True, "unreadable_newer": unreadable}


def render_last_cycle(last: dict[str, Any] | None) -> list[str]:
    """``deploy status`` lines for the last cycle.

    >>> render_last_cycle({"key": "k", "now": "2022-06-01T15:45:00-04:00", "status": "traded", "error": None,
    ...                    "reason": None, "orders": [{"symbol": "KO", "side": "buy", "qty": 3, "status": "filled",
    ...                                                "filled_qty": 3.0}]})
    ['last cycle  2022-06-01T15:45:00-04:00 traded', 'order       buy 3 KO: filled (3 filled)']
    """
    if last is None:
        return ["last cycle  none in the journal"]
    if last.get("unreadable"):
        return [f"last cycle  {last['key']}: unreadable record (and the {len(last['unreadable_newer']) - 1} before it)"]
    head = f"last cycle  {last.get('now')} {last.get('status')}"
    if last.get("error") or last.get("reason"):
        head += f": {last.get('error') or last.get('reason')}"
    lines = [head]
    for o in last.get("orders") or []:
        lines.append(f"order       {o['side']} {o.get('qty')} {o['symbol']}: {o.get('status')} ({o['filled_qty']:g} filled)")
    if not last.get("orders"):
        lines.append("order       none")
    for key in last.get("unreadable_newer") or []:
        lines.append(f"unreadable  {key} (newer, left out)")
    return lines


def report(cfg: DeployConfig, since, out, drift: bool = True) -> int:
    """``python -m deploy report``: the live report over the deployed journal."""
    from live.__main__ import report as live_report

    aws = Aws(cfg)
    return live_report(deployed_journal_url(cfg, aws), since, out, drift=drift, s3_client=aws.client("s3"))
