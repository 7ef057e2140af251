"""A journal of every cycle: one JSON record (inputs, provenance, signals, orders, broker answers, errors).

``JOURNAL`` is a local JSON-lines file (appended under a file lock, so concurrent cycles never interleave) or
``s3://bucket/prefix`` (one object per cycle: ``prefix/YYYY-MM-DD/<cycle id>.json``, since S3 cannot append).

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
    >>> journal = make_journal(path, secrets=["s3cr3t"])
    >>> journal.write({"cycle_id": "c1", "trading_date": "2022-06-01", "error": "bad key s3cr3t"}) == path
    True
    >>> json.loads(open(path).read())["error"]
    'bad key ***'
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterable, Protocol

from live.logs import redact_text


class Journal(Protocol):
    def write(self, record: dict[str, Any]) -> str:
        """Store one cycle's record; returns where (a file name or an S3 key)."""
        ...


class LocalJournal:
    def __init__(self, path: str | Path, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.secrets = list(secrets)

    def write(self, record: dict[str, Any]) -> str:
        line = redact_text(json.dumps(record, default=str, sort_keys=True), self.secrets) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return str(self.path)


class S3Journal:
    def __init__(self, url: str, secrets: Iterable[str] = ()) -> None:
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"JOURNAL {url!r} names no bucket (use s3://bucket/prefix)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.secrets = list(secrets)

    def write(self, record: dict[str, Any]) -> str:
        import boto3

        day = record.get("trading_date") or str(record.get("now", ""))[:10] or "undated"
        key = "/".join(p for p in (self.prefix, day, f"{record['cycle_id']}.json") if p)
        body = redact_text(json.dumps(record, default=str, sort_keys=True, indent=1), self.secrets)
        boto3.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json")
        return f"s3://{self.bucket}/{key}"


def make_journal(spec: str, secrets: Iterable[str] = ()) -> Journal:
    return S3Journal(spec, secrets) if spec.startswith("s3://") else LocalJournal(spec, secrets)
