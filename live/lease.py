"""One cycle at a time per strategy: a lease taken before the cycle touches the broker and held to its end.

Deterministic order ids stop a retry of one slot from doubling, but two cycles of *adjacent* slots (a manual
invoke, a delayed event, a slow cycle) name different orders, and each would buy the whole book. The lease
serialises them, across containers and processes:

* a local journal (the paper broker, a laptop): ``flock`` on ``<journal dir>/lease/<strategy>.lock``. The kernel
  drops the lock when its holder dies (``kill -9`` included), so a crashed cycle never blocks the next one.
* an S3 journal (Lambda): ``<prefix>/lease/<strategy>.json`` created with ``PutObject If-None-Match: *`` and
  holding its owner and expiry; deleted on release (``If-Match`` its own ETag, so an overtaken lease is never
  deleted by its former owner). An expired lease (its holder was killed) is taken over with ``If-Match`` on the
  ETag that was read, so of two cycles racing for a dead lease exactly one wins.

A cycle that cannot take the lease within ``wait`` seconds raises :class:`LeaseBusy`; the cycle reports
``status: busy`` and trades nothing. ``LEASE_WAIT_SECONDS`` (default 10) and ``LEASE_SECONDS`` (the S3 lease's
lifetime, default 900 = Lambda's longest timeout) tune it. In Lambda the handler sets the lifetime to the
invocation's remaining time (plus a margin): Lambda kills the cycle by then, so a dead cycle's lease frees up
as soon as it can, and a live one is never overtaken.

Example:
    >>> import tempfile
    >>> journal = tempfile.mkdtemp() + "/journal.jsonl"
    >>> first = open_lease(journal, "pt", LeaseSettings(wait=0.2))
    >>> first.acquire()
    >>> try:
    ...     open_lease(journal, "pt", LeaseSettings(wait=0.2)).acquire()
    ... except LeaseBusy as busy:
    ...     print("busy")
    busy
    >>> first.release()
    >>> again = open_lease(journal, "pt", LeaseSettings(wait=0.2)); again.acquire(); again.release()
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

from live.config import ConfigError
from live.journal import JournalHome, safe_name

POLL_SECONDS = 0.2


class LeaseBusy(Exception):
    """Another cycle of this strategy holds the lease."""


class LeaseError(Exception):
    """The lease store itself failed (S3 unreachable, lease folder unwritable)."""


@dataclass(frozen=True)
class LeaseSettings:
    """``wait``: seconds to wait for a busy lease; ``ttl``: lifetime of an S3 lease (renewed never: one cycle)."""

    wait: float = 10.0
    ttl: float = 900.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "LeaseSettings":
        """Read ``LEASE_WAIT_SECONDS`` and ``LEASE_SECONDS``.

        >>> LeaseSettings.from_env({"LEASE_WAIT_SECONDS": "3"}).wait
        3.0
        """
        return cls(wait=_seconds(env, "LEASE_WAIT_SECONDS", cls.wait, 0.0),
                   ttl=_seconds(env, "LEASE_SECONDS", cls.ttl, 1.0))


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (value >= minimum and value < float("inf")):
        raise ConfigError(f"{name} must be a finite number of seconds >= {minimum:g}, got {raw!r}")
    return value


class Lease(Protocol):
    where: str

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class FileLease:
    """``flock`` on a file: held by an open file description, released by the kernel when the holder dies."""

    def __init__(self, path: Path, settings: LeaseSettings) -> None:
        self.path, self.settings = path, settings
        self.where = str(path)
        self._handle = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as exc:
            raise LeaseError(f"cannot open the lease {self.path}: {exc}") from None
        deadline = time.monotonic() + self.settings.wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise LeaseBusy(f"another cycle holds {self.path} (waited {self.settings.wait:g} s)") from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"owner": _owner(), "since": _utcnow().isoformat()}))  # for a curious operator
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


class S3Lease:
    """A lease object on S3, created and taken over only by conditional writes."""

    def __init__(self, bucket: str, key: str, settings: LeaseSettings, client=None) -> None:
        self.bucket, self.key, self.settings = bucket, key, settings
        self.where = f"s3://{bucket}/{key}"
        self.owner = _owner()
        self._client = client
        self._etag: str | None = None

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _body(self) -> bytes:
        expires = _utcnow() + dt.timedelta(seconds=self.settings.ttl)
        return json.dumps({"owner": self.owner, "expires": expires.isoformat()}).encode()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.settings.wait
        while True:
            if self._try_take():
                return
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"another cycle holds {self.where} (waited {self.settings.wait:g} s)")
            time.sleep(POLL_SECONDS)

    def _try_take(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(),
                                                IfNoneMatch="*", ContentType="application/json")["ETag"]
            return True
        except ClientError as exc:
            if not _conflict(exc):
                raise LeaseError(f"cannot take the lease {self.where}: {_message(exc)}") from None
        try:  # someone holds it: is it expired (its holder killed)?
            current = self.client.get_object(Bucket=self.bucket, Key=self.key)
            etag, body = current["ETag"], current["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return False  # released meanwhile: the next round creates it
            raise LeaseError(f"cannot read the lease {self.where}: {_message(exc)}") from None
        try:
            expires = dt.datetime.fromisoformat(json.loads(body)["expires"])
        except (ValueError, KeyError, TypeError):
            expires = dt.datetime.min.replace(tzinfo=dt.timezone.utc)  # unreadable: as good as expired
        if expires > _utcnow():
            return False
        try:
            self._etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=etag,
                                                ContentType="application/json")["ETag"]
            return True
        except ClientError as exc:
            if _conflict(exc) or _code(exc) in ("NoSuchKey", "404"):
                return False  # another cycle took it over first
            raise LeaseError(f"cannot take over the lease {self.where}: {_message(exc)}") from None

    def release(self) -> None:
        from botocore.exceptions import ClientError

        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
            return
        except ClientError as exc:
            if _conflict(exc) or _code(exc) in ("NoSuchKey", "404"):
                return  # overtaken after expiring: the lease is someone else's now
            if _code(exc) not in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                raise LeaseError(f"cannot release the lease {self.where}: {_message(exc)}") from None
        try:  # a store without conditional deletes: delete only if it is still ours (a small race, then expiry)
            current = self.client.get_object(Bucket=self.bucket, Key=self.key)
            if current["ETag"] == etag:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchKey", "404"):
                raise LeaseError(f"cannot release the lease {self.where}: {_message(exc)}") from None


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _conflict(exc) -> bool:
    # 412 when the condition fails; 409 ConditionalRequestConflict when two conditional writes race on S3
    return _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def _message(exc) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def require_durable_home(journal: str, *, in_lambda: bool, broker: str, dry_run: bool) -> None:
    """Refuse to trade on Alpaca from Lambda with a local journal: the ledger and the lease live next to it, and
    ``/tmp`` dies with the container, so a cold start would forget the strategy's positions and buy them again.

    >>> require_durable_home("/tmp/prophettrend/journal.jsonl", in_lambda=True, broker="alpaca", dry_run=False)
    Traceback (most recent call last):
    ...
    live.config.ConfigError: JOURNAL must be s3://bucket/prefix in Lambda: the strategy's ledger and lease live with it, and /tmp does not outlive the container
    """
    if in_lambda and broker != "paper" and not dry_run and not journal.startswith("s3://"):
        raise ConfigError("JOURNAL must be s3://bucket/prefix in Lambda: the strategy's ledger and lease live with "
                          "it, and /tmp does not outlive the container")


def open_lease(journal: str, strategy: str, settings: LeaseSettings | None = None) -> Lease:
    """The lease of ``strategy`` next to the journal ``journal`` (a path or ``s3://bucket/prefix``)."""
    settings = settings or LeaseSettings()
    home = JournalHome.of(journal)
    name = safe_name(strategy)
    if home.bucket is not None:
        return S3Lease(home.bucket, home.key("lease", f"{name}.json"), settings)
    return FileLease(home.folder / "lease" / f"{name}.lock", settings)
