"""One cycle at a time per strategy: a lease taken before the cycle touches the broker, held to its end, and
proven (fenced) before every order, every cancel and every ledger write.

Deterministic order ids stop a retry of one slot from doubling, but two cycles of *adjacent* slots (a manual
invoke, a delayed event, a slow cycle) name different orders, and each would buy the whole book. The lease
serialises them, across containers and processes. It is one small record in the journal's store
(:mod:`live.store`): ``<journal dir>/lease/<strategy>.json`` or ``s3://bucket/prefix/lease/<strategy>.json``,
holding its owner and its lifetime in seconds from its last write.

* **Taken** only by a conditional write: created if absent, or replaced if expired, released or unreadable, on
  the version that was read, so of two cycles racing for it exactly one wins.
* **Expiry is judged on the store's clock**: the lease expires ``seconds`` after the store's own time of its
  last write (S3's ``Last-Modified``; a file's mtime), compared with the store's time now (S3's ``Date`` header;
  the kernel's timestamp of a fresh write). A host whose clock runs 20 minutes ahead cannot take a live lease.
* **Fenced**: :meth:`StoreLease.fence` rewrites the lease on the version this cycle holds (``If-Match`` on S3,
  the same compare-and-swap under ``flock`` locally). If another cycle has taken it over, the write fails and
  :class:`LeaseLost` stops the cycle before it sends anything more; it also fails when less than the margin is
  left, so no order is started that the lease might not cover. The fencing write carries the lifetime that is
  left, measured on this host's *monotonic* clock (a duration, never a date), so renewing never outlives the
  invocation.
* **Lifetime** (``LeaseSettings.ttl``): in Lambda, the invocation's remaining time plus a margin (Lambda kills
  the cycle by then, so a dead cycle's lease frees up as soon as it can, and a live one is never overtaken).
  ``LEASE_SECONDS`` may make it longer, never shorter than the invocation (``LEASE_MIN_SECONDS``, set by the
  handler); without an invocation (a laptop) it defaults to 900 s.
* **Locally** the holder also keeps ``flock`` on ``lease/<strategy>.lock``: the kernel drops it when its holder
  dies (``kill -9`` included), so the next cycle takes a crashed cycle's lease at once instead of waiting for it
  to expire.

A cycle that cannot take the lease within ``wait`` seconds raises :class:`LeaseBusy`; the cycle reports
``status: busy`` and trades nothing. ``LEASE_WAIT_SECONDS`` (default 10) tunes the wait.

Example:
    >>> import tempfile
    >>> journal = tempfile.mkdtemp() + "/journal.jsonl"
    >>> first = open_lease(journal, "pt", LeaseSettings(wait=0.2))
    >>> first.acquire(); first.fence()
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
from live.journal import safe_name
from live.store import JournalHome
from live.store import Conflict, LocalStore, S3Store, Store, StoreError, Stored

POLL_SECONDS = 0.2
DEFAULT_TTL = 900.0  # Lambda's longest timeout
FENCE_MARGIN_S = 30.0  # a fence needs this much lifetime left (a quarter of a shorter lease)


class LeaseBusy(Exception):
    """Another cycle of this strategy holds the lease."""


class LeaseError(Exception):
    """The lease store itself failed (S3 unreachable or denied, lease folder unwritable)."""


class LeaseLost(LeaseError):
    """This cycle no longer holds its lease (taken over after it expired, or about to expire): stop sending."""


@dataclass(frozen=True)
class LeaseSettings:
    """``wait``: seconds to wait for a busy lease; ``ttl``: the lease's lifetime in seconds."""

    wait: float = 10.0
    ttl: float = DEFAULT_TTL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "LeaseSettings":
        """Read ``LEASE_WAIT_SECONDS``, ``LEASE_SECONDS`` and the invocation's ``LEASE_MIN_SECONDS``.

        >>> LeaseSettings.from_env({"LEASE_WAIT_SECONDS": "3"}).wait
        3.0
        >>> LeaseSettings.from_env({"LEASE_SECONDS": "60", "LEASE_MIN_SECONDS": "325"}).ttl  # never shorter
        325.0
        """
        floor = _seconds(env, "LEASE_MIN_SECONDS", 0.0, 1.0)
        ttl = _seconds(env, "LEASE_SECONDS", floor or cls.ttl, 1.0)
        return cls(wait=_seconds(env, "LEASE_WAIT_SECONDS", cls.wait, 0.0), ttl=max(ttl, floor))

    @property
    def margin(self) -> float:
        return min(FENCE_MARGIN_S, self.ttl / 4)


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

    def fence(self) -> None: ...

    def release(self) -> None: ...


class StoreLease:
    """The lease record ``key`` in ``store``; ``hold_lock``: a local file to keep ``flock`` on while held."""

    def __init__(self, store: Store, key: str, settings: LeaseSettings, hold_lock: Path | None = None) -> None:
        self.store, self.key, self.settings = store, key, settings
        self.where = store.where(key)
        self.owner = _owner()
        self.hold_lock = hold_lock
        self.version: str | None = None
        self.fences = 0
        self._taken_at: float | None = None  # time.monotonic() when taken: the lifetime left is measured from it
        self._handle = None

    # -- the record --------------------------------------------------------------------------------------------
    def _body(self, seconds: float, flocked: bool) -> bytes:
        return json.dumps({"owner": self.owner, "seconds": round(seconds, 3), "flocked": flocked,
                           "fence": self.fences, "host_time": _utcnow().isoformat()}).encode()

    def _left(self) -> float:
        return self.settings.ttl - (time.monotonic() - self._taken_at) if self._taken_at is not None else 0.0

    def _free(self, current: Stored, flock_is_ours: bool) -> bool:
        """Whether ``current`` may be taken: released, unreadable, expired on the store's clock, or held by a
        local holder whose ``flock`` the kernel has dropped (it died)."""
        try:
            body = json.loads(current.data)
            if body.get("released"):
                return True
            seconds = float(body.get("seconds", DEFAULT_TTL))  # an older lease (an absolute "expires"): 900 s
            flocked = bool(body.get("flocked"))
        except (ValueError, TypeError, AttributeError):
            return True  # unreadable: as good as expired
        if flocked and flock_is_ours:
            return True
        if current.written is None:
            return False
        return self._store_now() >= current.written + dt.timedelta(seconds=seconds)

    def _store_now(self) -> dt.datetime:
        if isinstance(self.store, S3Store) and self.store.last_date is not None:
            return self.store.last_date  # the Date of the answer that brought the lease: S3's time now
        return self.store.now()

    # -- taking and giving back -------------------------------------------------------------------------------
    def acquire(self) -> None:
        deadline = time.monotonic() + self.settings.wait
        while True:
            try:
                if self._try_take():
                    return
            except StoreError as exc:
                raise LeaseError(f"cannot take the lease: {exc}") from None
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"another cycle holds {self.where} (waited {self.settings.wait:g} s)")
            time.sleep(POLL_SECONDS)

    def _try_take(self) -> bool:
        handle = self._try_flock()
        started = time.monotonic()
        body = self._body(self.settings.ttl, flocked=handle is not None)
        try:
            try:  # create first: the common case costs one request, and needs no read of a missing key
                self.version = self.store.write_if_absent(self.key, body)
            except Conflict:
                pass
            current = None if self.version is not None else self.store.read(self.key)
            if self.version is not None or current is None:
                pass  # taken (or released meanwhile: the next round creates it)
            elif self._free(current, flock_is_ours=handle is not None):
                self.version = self.store.write_if_unchanged(self.key, body, current.version)
            else:
                return False
        except Conflict:
            return False  # another cycle wrote it first
        finally:
            if self.version is None and handle is not None:
                handle.close()
        if self.version is None:
            return False
        self._taken_at, self._handle = started, handle
        return True

    def _try_flock(self):
        if self.hold_lock is None:
            return None
        try:
            self.hold_lock.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.hold_lock, "a+")
        except OSError as exc:
            raise LeaseError(f"cannot open the lease lock {self.hold_lock}: {exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
            return None

    def fence(self) -> None:
        """Prove this cycle still holds the lease, by a conditional write on the version it holds; raises
        :class:`LeaseLost` if it does not, or if less than the margin of its lifetime is left."""
        if self.version is None:
            raise LeaseLost(f"this cycle does not hold {self.where}")
        left = self._left()
        if left < self.settings.margin:
            raise LeaseLost(f"lease {self.where} has {max(left, 0):.0f} s left, under the {self.settings.margin:g} s "
                            "margin an order needs: stopping before the next cycle may take it over")
        self.fences += 1
        try:
            self.version = self.store.write_if_unchanged(self.key, self._body(left, self._handle is not None),
                                                         self.version)
        except Conflict:
            self.version = None
            raise LeaseLost(f"lease {self.where} was taken over by another cycle (it expired): this cycle stops "
                            "sending orders and writing the ledger") from None
        except StoreError as exc:
            raise LeaseError(f"cannot fence the lease: {exc}") from None

    def release(self) -> None:
        version, self.version = self.version, None
        try:
            if version is not None:
                self.store.delete_if_unchanged(self.key, version)
        except Conflict:
            pass  # overtaken after expiring: the lease is someone else's now
        except StoreError as exc:
            raise LeaseError(f"cannot release the lease: {exc}") from None
        finally:
            if self._handle is not None:
                self._handle.close()  # closing drops the flock
                self._handle = None


def FileLease(path: Path, settings: LeaseSettings) -> StoreLease:  # noqa: N802 - the name earlier callers used
    """A local lease: the record next to ``path`` (``<name>.json``) and ``flock`` on ``path`` while held."""
    return StoreLease(LocalStore(path.parent), path.with_suffix(".json").name, settings, hold_lock=path)


def S3Lease(bucket: str, key: str, settings: LeaseSettings, client=None) -> StoreLease:  # noqa: N802
    """A lease object on S3, taken, fenced and released only by conditional writes."""
    return StoreLease(S3Store(bucket, client), key, settings)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)  # only written into the record for a curious operator


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
