"""The invocation event, read strictly: a cycle that misreads ``dry_run`` would trade real money.

The event is a JSON object: ``now`` (a replayed moment) and ``dry_run`` (only true or false values: ``true``/
``false``, ``"true"``/``"false"``, ``1``/``0``, ``"yes"``/``"no"``, ``"on"``/``"off"``, or absent/null for
false). Anything else, or a misspelt ``dry_run`` key (``dryRun``, ``dry-run``), is an input error and nothing
trades. Other keys are ignored (EventBridge's schedule sends ``{"source": "schedule"}``).

Example:
    >>> read_event({"dry_run": "True"})
    ({'dry_run': 'True'}, True)
    >>> read_event({"dry_run": "nope"})
    Traceback (most recent call last):
    ...
    live.config.InputError: event dry_run must be true or false, got 'nope'
    >>> read_event(["dry_run"])
    Traceback (most recent call last):
    ...
    live.config.InputError: the event must be a JSON object, got a list
"""

from __future__ import annotations

from typing import Any

from live.config import InputError

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
        if isinstance(key, str) and key != "dry_run" and key.lower().replace("-", "").replace("_", "") == "dryrun":
            raise InputError(f"event key {key!r} is not understood: the dry-run switch is spelt dry_run")
    return dict(event), dry_run_flag(event.get("dry_run"))


def _kind(value: Any) -> str:
    names = {list: "a list", tuple: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)
