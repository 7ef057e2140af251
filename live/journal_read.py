"""Reading the journal back: the cycle records of a JSON-lines file or of ``s3://bucket/prefix``, for the report.

A record that cannot be read (torn JSON, not an object, no ``cycle_id``) is counted and named in
:attr:`JournalRead.unreadable`, and the rest is still read. Only a journal with no readable record at all (empty,
truncated to nothing, foreign) is a :class:`JournalError`. Fields are read defensively (the record grows: new
statuses, ``fates``, metric lines): anything missing reads as absent, never as an error. The fields the report
uses are listed in docs/reports.md ("Live report").

S3 layout (``live.journal.S3Journal``): ``prefix/YYYY-MM-DD/<cycle id>.json`` and ``prefix/undated/...``; the
daybook's ``prefix/decisions/`` marks are not cycles and are left alone.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"cycle_id": "c1", "status": "traded", "now": "2022-06-01T15:45:00-04:00",
    ...                             "trading_date": "2022-06-01"}) + "\\n" + '{"cycle_id": "c2", "sta')
    >>> read = read_journal(path)
    >>> [r["cycle_id"] for r in read.records], read.unreadable[0].where, read.unreadable[0].why
    (['c1'], 'line 2', 'truncated or malformed JSON')
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY_FOLDER = re.compile(r"^(\d{4}-\d{2}-\d{2}|undated)/[^/]+\.json$")


class JournalError(ValueError):
    """Nothing to report on: no journal, an empty or foreign one, or no cycle after ``--since``."""


@dataclass(frozen=True)
class Unreadable:
    where: str  # "line 7" or an S3 key
    why: str


@dataclass
class JournalRead:
    source: str
    records: list[dict[str, Any]] = field(default_factory=list)  # oldest first, one per cycle id
    unreadable: list[Unreadable] = field(default_factory=list)


def read_journal(spec: str, *, since: dt.date | None = None, s3_client=None) -> JournalRead:
    """The cycle records of ``spec`` (a JSON-lines path or ``s3://bucket/prefix``) on or after ``since``."""
    read = _read_s3(spec, since, s3_client) if spec.startswith("s3://") else _read_local(Path(spec))
    if not read.records:
        what = f"; {len(read.unreadable)} unreadable ({read.unreadable[0].where}: {read.unreadable[0].why})" \
            if read.unreadable else ""
        raise JournalError(f"no cycle records in {spec}{what}")
    read.records = _dedupe(sorted(read.records, key=moment))
    if since is not None:
        last = trading_date(read.records[-1])
        read.records = [r for r in read.records if (trading_date(r) or dt.date.min) >= since]
        if not read.records:
            raise JournalError(f"--since {since} is after the journal's last cycle ({last})")
    return read


def _record(text: str, where: str, read: JournalRead) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        read.unreadable.append(Unreadable(where, "truncated or malformed JSON"))
        return
    if not isinstance(value, dict) or not isinstance(value.get("cycle_id"), str) or "status" not in value:
        read.unreadable.append(Unreadable(where, "not a cycle record (no cycle_id and status)"))
        return
    read.records.append(value)


def _read_local(path: Path) -> JournalRead:
    if path.is_dir():
        raise JournalError(f"{path} is a folder; give the journal file (e.g. {path / 'journal.jsonl'})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"no journal at {path}") from None
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from None
    read = JournalRead(str(path))
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            read.unreadable.append(Unreadable(f"line {number}", "not UTF-8 text"))
            continue
        _record(text, f"line {number}", read)
    return read


def _read_s3(url: str, since: dt.date | None, client) -> JournalRead:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise JournalError(f"{url} names no bucket (use s3://bucket/prefix)")
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    if client is None:
        import boto3

        client = boto3.client("s3")
    read = JournalRead(url)
    try:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
                for o in page.get("Contents", [])]
        for key in sorted(keys):
            rest = key[len(base):]
            if not DAY_FOLDER.match(rest):
                continue  # the daybook's decisions/ marks, or someone else's files
            folder = rest.split("/", 1)[0]
            if since is not None and folder != "undated" and folder < since.isoformat():
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            _record(body.decode("utf-8", errors="replace"), key, read)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise JournalError(f"{url}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise JournalError(f"{url}: {exc}") from None
    if not read.records and not read.unreadable:
        raise JournalError(f"no cycles under {url}" + (f" on or after {since}" if since else ""))
    return read


def _dedupe(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        if r["cycle_id"] not in seen:
            seen.add(r["cycle_id"])
            out.append(r)
    return out


# ---------------------------------------------------------------- defensive field access

def get(record: dict, *path: str, default: Any = None) -> Any:
    """``record[path[0]][path[1]]...``, or ``default`` where any step is missing or not a mapping.

    >>> get({"inputs": {"account": {"equity": 5.0}}}, "inputs", "account", "equity"), get({}, "inputs", "x", default=0)
    (5.0, 0)
    """
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def moment(record: dict) -> dt.datetime:
    """The cycle's time (UTC); a record without a readable ``now`` sorts first."""
    try:
        t = dt.datetime.fromisoformat(str(record.get("now")))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def trading_date(record: dict) -> dt.date | None:
    for text in (record.get("trading_date"), str(record.get("now") or "")[:10]):
        try:
            return dt.date.fromisoformat(str(text))
        except ValueError:
            continue
    return None


def orders(record: dict) -> list[dict]:
    """The record's orders that are mappings with a symbol and a side."""
    return [o for o in record.get("orders") or [] if isinstance(o, dict) and o.get("symbol") and o.get("side")]


def error_text(record: dict) -> str | None:
    error = record.get("error")
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("type", "message") if error.get(k))
    return str(error) if error else None


def filled_qty(order: dict) -> float:
    try:
        return float(order.get("filled_qty") or 0)
    except (TypeError, ValueError):
        return 0.0
