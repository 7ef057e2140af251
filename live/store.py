"""One small durable record store with conditional writes, under the lease, the ledger and the daybook.

Each needs the same thing: read a small object with its version, create it only if absent, replace it only if
it is unchanged since the version read. Two backends, one interface and one error type:

* :class:`LocalStore`: files in a folder; every conditional write runs under ``flock`` on ``<folder>/.store.lock``
  and lands by temp file, fsync and rename. A version is the sha-256 of the bytes.
* :class:`S3Store`: objects under a prefix; ``If-None-Match: *`` and ``If-Match: <ETag>`` do the conditions,
  so two writers racing on one key can never both win. A version is the ETag.

``now()`` is the *store's* clock (S3's ``Date`` header; a local file system's timestamp of a write), so a host
whose clock is off cannot misjudge an expiry that the store recorded.

Every failure is a :class:`StoreError` naming the object. An S3 ``AccessDenied`` names the permission that is
missing, in one line: S3 answers a GET of a missing key with 403 when the role may not list the bucket, so a
denied read is told apart by a one-key listing (:func:`denied_read`).

Example:
    >>> import tempfile
    >>> store = LocalStore(tempfile.mkdtemp())
    >>> store.read("ledger/pt.json") is None
    True
    >>> v1 = store.write_if_absent("ledger/pt.json", b"one")
    >>> store.write_if_unchanged("ledger/pt.json", b"two", v1) != v1, store.read("ledger/pt.json").data
    (True, b'two')
    >>> try:
    ...     store.write_if_unchanged("ledger/pt.json", b"three", v1)   # v1 is stale now
    ... except Conflict:
    ...     print("conflict")
    conflict
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol


class StoreError(Exception):
    """The store failed: unreachable, denied, unwritable. The message is one line and names the object."""


class Conflict(StoreError):
    """A conditional write lost: the object exists (create) or changed since the version given (replace)."""


@dataclass(frozen=True)
class Stored:
    """One object as read: its bytes, its version, and the store's time of its last write (``written``)."""

    data: bytes
    version: str
    written: dt.datetime | None = None


class Store(Protocol):
    def where(self, key: str) -> str: ...

    def read(self, key: str) -> Stored | None: ...

    def write_if_absent(self, key: str, data: bytes) -> str: ...

    def write_if_unchanged(self, key: str, data: bytes, version: str) -> str: ...

    def delete_if_unchanged(self, key: str, version: str) -> None: ...

    def now(self) -> dt.datetime: ...


# -- local ----------------------------------------------------------------------------------------------------

def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LocalStore:
    """Files under ``folder``; conditional writes serialised by ``flock`` (across threads and processes)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def where(self, key: str) -> str:
        return str(self.folder / key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / ".store.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the store {self.folder}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    def read(self, key: str) -> Stored | None:
        path = self.folder / key
        try:
            data = path.read_bytes()
            written = dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.timezone.utc)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None
        return Stored(data, _version(data), written)

    def _current(self, key: str) -> str | None:
        got = self.read(key)
        return None if got is None else got.version

    def write_if_absent(self, key: str, data: bytes) -> str:
        with self._locked():
            if self._current(key) is not None:
                raise Conflict(f"{self.where(key)} exists already")
            return self._write(key, data)

    def write_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        with self._locked():
            current = self._current(key)
            if current != version:
                raise Conflict(f"{self.where(key)} changed since it was read")
            return self._write(key, data)

    def delete_if_unchanged(self, key: str, version: str) -> None:
        with self._locked():
            if self._current(key) != version:
                raise Conflict(f"{self.where(key)} changed since it was read")
            try:
                os.unlink(self.folder / key)
            except OSError as exc:
                raise StoreError(f"cannot delete {self.where(key)}: {exc}") from None

    def now(self) -> dt.datetime:
        """The file system's time: the timestamp the kernel gives a file touched now (not Python's clock)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".store.clock"
            with open(probe, "a"):
                os.utime(probe)  # no times given: the kernel stamps it with its own clock
            return dt.datetime.fromtimestamp(os.stat(probe).st_mtime, dt.timezone.utc)
        except OSError as exc:
            raise StoreError(f"cannot read the store's clock in {self.folder}: {exc}") from None

    def _write(self, key: str, data: bytes) -> str:
        path = self.folder / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a crash
            finally:
                os.close(folder)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from None
        return _version(data)


# -- S3 -------------------------------------------------------------------------------------------------------

MISSING_CODES = ("NoSuchKey", "404", "NotFound")
CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
DENIED_CODES = ("AccessDenied", "403", "Forbidden")


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc) -> str:
    error = exc.response.get("Error", {})
    return " ".join(f"{error.get('Code', 'error')}: {error.get('Message', '')}".split()).rstrip(": ")


def _header_time(response: dict, name: str) -> dt.datetime | None:
    raw = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(name)
    if not raw:
        return None
    try:
        return email.utils.parsedate_to_datetime(raw).astimezone(dt.timezone.utc)
    except (TypeError, ValueError):
        return None


class S3Store:
    """Objects in ``bucket`` (keys as given: the callers add their prefix)."""

    def __init__(self, bucket: str, client=None) -> None:
        self.bucket = bucket
        self._client = client
        self.last_date: dt.datetime | None = None  # the store's clock at its last answer

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _note_date(self, response: dict) -> None:
        self.last_date = _header_time(response, "date") or self.last_date

    def read(self, key: str) -> Stored | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key)
            data = got["Body"].read()
        except ClientError as exc:
            self._note_date(exc.response)
            if _code(exc) in MISSING_CODES:
                return None
            if _code(exc) in DENIED_CODES:
                raise StoreError(denied_read(self.client, self.bucket, key)) from None
            raise StoreError(f"cannot read {self.where(key)}: {_message(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read {self.where(key)}: {exc}") from None
        self._note_date(got)
        written = got.get("LastModified")
        return Stored(data, got["ETag"], written.astimezone(dt.timezone.utc) if written else None)

    def _put(self, key: str, data: bytes, **condition: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            put = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json",
                                         **condition)
        except ClientError as exc:
            self._note_date(exc.response)
            # a write on a version that is gone (412, or 404 for If-Match) lost the race like any other
            moved = _code(exc) in CONFLICT_CODES or ("IfMatch" in condition and _code(exc) in MISSING_CODES)
            raise self._failed(exc, key, "write", "s3:PutObject", moved) from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot write {self.where(key)}: {exc}") from None
        self._note_date(put)
        return put["ETag"]

    def _failed(self, exc, key: str, verb: str, permission: str, moved: bool) -> StoreError:
        """The one-line error of a conditional write or delete S3 refused: :class:`Conflict` when the object's
        version ``moved`` since it was read, else the missing ``permission`` when denied, else S3's own words."""
        if moved:
            return Conflict(f"{self.where(key)} changed since it was read ({_code(exc)})")
        if _code(exc) in DENIED_CODES:
            return StoreError(f"access denied {verb[:-1]}ing {self.where(key)}: the function's role needs "
                              f"{permission} on arn:aws:s3:::{self.bucket}/{key}")
        return StoreError(f"cannot {verb} {self.where(key)}: {_message(exc)}")

    def write_if_absent(self, key: str, data: bytes) -> str:
        return self._put(key, data, IfNoneMatch="*")

    def write_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        return self._put(key, data, IfMatch=version)

    def delete_if_unchanged(self, key: str, version: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=version)
        except ClientError as exc:
            moved = _code(exc) in CONFLICT_CODES or _code(exc) in MISSING_CODES
            raise self._failed(exc, key, "delete", "s3:DeleteObject", moved) from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot delete {self.where(key)}: {exc}") from None

    def now(self) -> dt.datetime:
        """S3's clock: the ``Date`` of a fresh answer (a HEAD of the bucket's lease folder marker is enough)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=".clock")
            self._note_date(answer)
        except ClientError as exc:  # 404 or 403: either way an answer, with S3's Date on it
            self._note_date(exc.response)
        except BotoCoreError as exc:
            raise StoreError(f"cannot reach s3://{self.bucket}: {exc}") from None
        if self.last_date is None:
            raise StoreError(f"s3://{self.bucket} answered without a Date header")
        return self.last_date


def denied_read(client, bucket: str, key: str) -> str:
    """The one-line reason a GET of ``key`` was denied: the permission that is missing.

    Without ``s3:ListBucket`` S3 answers a GET of a *missing* key with 403, so the first cycle of a fresh deploy
    could never read its absent ledger. A listing of that one key tells which permission is missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    arn = f"arn:aws:s3:::{bucket}/{key}"
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except ClientError as exc:
        if _code(exc) in DENIED_CODES:
            return (f"access denied reading s3://{bucket}/{key}: the function's role needs s3:ListBucket on "
                    f"arn:aws:s3:::{bucket} (for its prefix; without it S3 answers 403 for a missing key) and "
                    f"s3:GetObject on {arn}")
        return f"access denied reading s3://{bucket}/{key}: {_message(exc)}"
    except BotoCoreError as exc:
        return f"access denied reading s3://{bucket}/{key} ({exc})"
    return f"access denied reading s3://{bucket}/{key}: the function's role needs s3:GetObject on {arn}"


@dataclass(frozen=True)
class JournalHome:
    """Where the journal lives: a local ``folder`` or an S3 ``bucket`` and ``prefix``.

    >>> JournalHome.of("s3://b/cycles").key("ledger", "pt.json"), str(JournalHome.of("/x/journal.jsonl").folder)
    ('cycles/ledger/pt.json', '/x')
    """

    folder: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @classmethod
    def of(cls, spec: str) -> "JournalHome":
        if spec.startswith("s3://"):
            bucket, _, prefix = spec[len("s3://"):].partition("/")
            if not bucket:
                raise ValueError(f"JOURNAL {spec!r} names no bucket (use s3://bucket/prefix)")
            return cls(bucket=bucket, prefix=prefix.strip("/"))
        return cls(folder=Path(spec).parent)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)


def open_store(journal: str) -> tuple[Store, str]:
    """The store next to the journal ``journal`` and the key prefix of its records.

    >>> store, prefix = open_store("s3://bucket/cycles"); store.where(prefix + "ledger/pt.json")
    's3://bucket/cycles/ledger/pt.json'
    """
    home = JournalHome.of(journal)
    if home.bucket is not None:
        return S3Store(home.bucket), (home.prefix + "/" if home.prefix else "")
    return LocalStore(home.folder), ""
