"""The invocation event, read strictly: a cycle that misreads ``dry_run`` would trade real money.

The event is a JSON object with at most these keys (:data:`ACCEPTED_KEYS`):

* ``now``: a replayed moment (ISO 8601; paper broker or dry run only);
* ``dry_run``: only plainly true or false values: ``true``/``false``, ``"true"``/``"false"``, ``1``/``0``,
  ``"yes"``/``"no"``, ``"on"``/``"off"``, or absent/null for false;
* ``source``: who sent it, informational (the deployed EventBridge Scheduler schedules send
  ``{"source": "schedule"}``; ``python -m deploy invoke`` sends ``{}`` unless ``--event`` says otherwise).

Any other key is an input error and nothing trades: a spelling with spaces, punctuation or case (``dryRun``,
``"dry run"``, ``"dry_run "``) or a nested ``{"options": {"dry_run": true}}`` must never be ignored, or a "dry
run" would trade. The error lists the accepted keys. (The Lambda console's sample test event, ``{"key1": ...}``,
is refused the same way: give ``{}`` or ``{"dry_run": true}``.)

Example:
    >>> read_event({"dry_run": "True"})
    ({'dry_run': 'True'}, True)
    >>> read_event({"source": "schedule"})
    ({'source': 'schedule'}, False)
    >>> read_event({"dry_run": "nope"})
    Traceback (most recent call last):
    ...
    live.config.InputError: event dry_run must be true or false, got 'nope'
    >>> read_event({"options": {"dry_run": True}})
    Traceback (most recent call last):
    ...
    live.config.InputError: event key 'options' is not understood (nothing was traded); accepted keys: dry_run, now, source
    >>> read_event(["dry_run"])
    Traceback (most recent call last):
    ...
    live.config.InputError: the event must be a JSON object, got a list
"""

from __future__ import annotations

from typing import Any

from live.config import InputError

ACCEPTED_KEYS = ("dry_run", "now", "source")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def dry_run_flag(value: Any) -> bool:
    """``dry_run`` as a bool; :class:`InputError` for anything that is not plainly true or false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"event dry_run must be true or false, got {value!r}")


def read_event(event: Any) -> tuple[dict[str, Any], bool]:
    """The event as a dict and its ``dry_run`` flag; ``None`` is an empty event."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise InputError(f"the event must be a JSON object, got {_kind(event)}")
    for key in event:
        if key not in ACCEPTED_KEYS:
            hint = ""
            if isinstance(key, str) and "".join(c for c in key.lower() if c.isalnum()) == "dryrun":
                hint = " (the dry-run switch is spelt dry_run)"
            raise InputError(f"event key {key!r} is not understood{hint} (nothing was traded); "
                             f"accepted keys: {', '.join(ACCEPTED_KEYS)}")
    source = event.get("source")
    if source is not None and not isinstance(source, str):
        raise InputError(f"event source must be a string, got {_kind(source)}")
    return dict(event), dry_run_flag(event.get("dry_run"))


def _kind(value: Any) -> str:
    names = {list: "a list", tuple: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)
