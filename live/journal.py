"""A journal of every cycle: one JSON record (inputs, provenance, signals, orders, broker answers, errors).

``JOURNAL`` is a local JSON-lines file or ``s3://bucket/prefix``:

* locally each record is one line appended under a file lock (concurrent cycles never interleave) and fsynced
  before the write returns. A torn tail (a partial last line left by a full disk or a killed writer) is detected
  before the next append: the torn bytes are moved to ``<journal>.torn`` (never dropped silently), the file is cut
  back to its last whole line, and the record that follows says so in ``journal_repair``. A write that fails
  half-way is cut back at once, so it cannot swallow the next record either.
* on S3 each cycle writes its own object, ``prefix/YYYY-MM-DD/<cycle id>.json`` (S3 cannot append), created
  with ``If-None-Match: *`` so no record ever overwrites another.

The strategy's ledger and lease live next to the journal (:class:`JournalHome`).

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
    >>> journal = make_journal(path, secrets=["s3cr3t"])
    >>> journal.write({"cycle_id": "c1", "trading_date": "2022-06-01", "error": "bad key s3cr3t"}) == path
    True
    >>> json.loads(open(path).read())["error"]
    'bad key ***'
    >>> with open(path, "a") as f:
    ...     _ = f.write('{"cycle_id": "c2", "trun')   # a torn write
    >>> _ = journal.write({"cycle_id": "c3"})
    >>> [json.loads(line)["cycle_id"] for line in open(path)], open(path + ".torn").read().count("trun")
    (['c1', 'c3'], 1)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from live.logs import redact_text
from live.store import JournalHome  # noqa: F401 - where the journal lives; its ledger and lease live there too


def safe_name(name: str) -> str:
    """A strategy name as a file name part.

    >>> safe_name("prophet-trend"), safe_name("a/b")
    ('prophet-trend', 'a_b')
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


class Journal(Protocol):
    def write(self, record: dict[str, Any]) -> str:
        """Store one cycle's record; returns where (a file name or an S3 key)."""
        ...


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until done (a short write is legal); the seam tests use to fill the disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LocalJournal:
    def __init__(self, path: str | Path, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.secrets = list(secrets)
        self.last_repair: dict[str, Any] | None = None  # what the last write found torn and moved aside

    def write(self, record: dict[str, Any]) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            repair = self.last_repair = self._repair(fd)
            if repair is not None:
                record = {**record, "journal_repair": repair}
            line = redact_text(json.dumps(record, default=str, sort_keys=True), self.secrets) + "\n"
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line.encode())
                os.fsync(fd)
            except OSError:
                try:  # cut the partial line back now, so it cannot tear the next record
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError:
                    pass  # the next write's repair moves it aside
                raise
        finally:
            os.close(fd)
        return str(self.path)

    def _repair(self, fd: int) -> dict[str, Any] | None:
        """Move a torn last line aside; ``None`` when the file ends with a whole line."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        start, step = size, 65536
        while start > 0:  # find the end of the last whole line
            lo = max(0, start - step)
            chunk = os.pread(fd, start - lo, lo)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = lo + cut + 1
                break
            start = lo
        torn = os.pread(fd, size - start, start)
        aside = self.path.with_name(self.path.name + ".torn")
        with open(aside, "ab") as handle:  # appended, fsynced, before the journal is cut
            handle.write(b"# torn tail moved here at " + dt.datetime.now(dt.timezone.utc).isoformat().encode()
                         + b" from byte " + str(start).encode() + b"\n" + torn + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.ftruncate(fd, start)
        os.fsync(fd)
        return {"torn_bytes": len(torn), "at_byte": start, "moved_to": str(aside)}


class S3Journal:
    def __init__(self, url: str, secrets: Iterable[str] = ()) -> None:
        home = JournalHome.of(url)
        self.bucket, self.prefix = home.bucket, home.prefix
        self.secrets = list(secrets)

    def write(self, record: dict[str, Any]) -> str:
        from live.store import S3Store

        day = record.get("trading_date") or str(record.get("now", ""))[:10] or "undated"
        key = "/".join(p for p in (self.prefix, day, f"{record['cycle_id']}.json") if p)
        body = redact_text(json.dumps(record, default=str, sort_keys=True, indent=1), self.secrets)
        store = S3Store(self.bucket)
        store.write_if_absent(key, body.encode())  # a record never overwrites another; AccessDenied names the grant
        return store.where(key)


def make_journal(spec: str, secrets: Iterable[str] = ()) -> Journal:
    return S3Journal(spec, secrets) if spec.startswith("s3://") else LocalJournal(spec, secrets)
