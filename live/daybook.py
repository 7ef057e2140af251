"""Which trading days a strategy has already decided on, so the daily cadence decides once per day.

A mark is written once the day's decision has been submitted; a later cycle that day (a retry, a manual invoke,
a second schedule) finds it, reconciles and reports, and never decides again. Marks live with the journal:
``<journal folder>/decisions/<strategy>/<date>.json`` locally, ``s3://bucket/prefix/decisions/<strategy>/<date>.json``
on S3.

Example:
    >>> import datetime as dt, tempfile, os
    >>> book = make_daybook(os.path.join(tempfile.mkdtemp(), "journal.jsonl"), "prophet-trend")
    >>> book.decided(dt.date(2022, 6, 1)) is None
    True
    >>> book.mark(dt.date(2022, 6, 1), {"cycle_id": "c1", "orders": 2})
    >>> book.decided(dt.date(2022, 6, 1))["cycle_id"]
    'c1'
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol


class DaybookError(RuntimeError):
    """A mark that exists but cannot be read: whether the day was decided is unknown, so nothing is decided."""


class Daybook(Protocol):
    def decided(self, day: dt.date) -> dict[str, Any] | None: ...

    def mark(self, day: dt.date, record: dict[str, Any]) -> None: ...


class LocalDaybook:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.json"

    def decided(self, day: dt.date) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(day).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # unknown is not "decided": deciding on it could skip the day silently
            raise DaybookError(f"the daybook mark {self._path(day)} cannot be read: {exc}") from None

    def mark(self, day: dt.date, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written whole then renamed, so a crash never leaves half a mark.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".mark-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path(day))


class S3Daybook:
    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix

    def _key(self, day: dt.date) -> str:
        return f"{self.prefix}/{day.isoformat()}.json"

    def decided(self, day: dt.date) -> dict[str, Any] | None:
        import boto3
        from botocore.exceptions import ClientError

        try:
            body = boto3.client("s3").get_object(Bucket=self.bucket, Key=self._key(day))["Body"].read()
        except ClientError as exc:
            # The function may not list the bucket (least privilege), and S3 then answers a GET of a missing key
            # with 403 instead of 404: both mean no mark. Deciding again is still safe: ids are keyed by the date.
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "AccessDenied", "403"):
                return None
            raise DaybookError(f"the daybook mark s3://{self.bucket}/{self._key(day)} cannot be read: {exc}") from None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise DaybookError(f"the daybook mark s3://{self.bucket}/{self._key(day)} cannot be read: {exc}") from None

    def mark(self, day: dt.date, record: dict[str, Any]) -> None:
        import boto3

        boto3.client("s3").put_object(Bucket=self.bucket, Key=self._key(day),
                                      Body=json.dumps(record, default=str).encode(), ContentType="application/json")


def make_daybook(journal: str, strategy: str) -> Daybook:
    """The daybook next to ``journal`` (a JSON-lines path or ``s3://bucket/prefix``)."""
    if journal.startswith("s3://"):
        bucket, _, prefix = journal[len("s3://"):].partition("/")
        return S3Daybook(bucket, "/".join(p for p in (prefix.strip("/"), "decisions", strategy) if p))
    return LocalDaybook(Path(journal).parent / "decisions" / strategy)
