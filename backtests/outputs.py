"""Writing a run's files so that a folder either holds a complete run or nothing new.

Files are written into a hidden sibling folder and renamed into place at the end; an interrupted or failed
run leaves no folder that looks complete, and an existing run is never overwritten without ``overwrite``.
``overwrite`` replaces only a folder that holds a previous run (its ``summary.json`` and the other run files,
nothing else): a folder with anything else in it is refused, never deleted.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with staged_dir(root / "run") as stage:
    ...     write_json(stage / "summary.json", {"params": {}, "config": {}, "benchmark": {}})
    >>> is_previous_run(root / "run")
    True
    >>> (root / "mine").mkdir(); _ = (root / "mine" / "notes.txt").write_text("keep")
    >>> check_out_dir(root / "mine", overwrite=True)
    Traceback (most recent call last):
    ...
    ValueError: --out ... holds files that are not a previous run (notes.txt); --overwrite replaces only a run folder
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# Every file a run may write; a folder holding anything else is not (only) a run, so it is never replaced.
RUN_FILES = frozenset({"summary.json", "equity.csv", "trades.csv", "report.png", "config.toml", "skipped.csv",
                       "report.html", "round_trips.csv", "positions.csv", "strategy.py"})
# Keys every summary.json has: together with RUN_FILES they tell a previous run from a user's folder.
_SUMMARY_KEYS = ("params", "config", "benchmark")


def default_out_dir(root: Path = Path("runs")) -> Path:
    """A new timestamped folder under ``runs/`` (``runs/20260101-120000``, with a suffix if taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def is_previous_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run written here: a run's ``summary.json`` and only run files."""
    try:
        names = {p.name for p in folder.iterdir()}
        if "summary.json" not in names or not names <= RUN_FILES:
            return False
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and all(key in summary for key in _SUMMARY_KEYS)


def _foreign(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in RUN_FILES) or ["summary.json is not a run's"]


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Every check that writing ``out`` would otherwise fail at, run before the (long) run; ``ValueError`` if not.

    ``out`` must not be a file, lie under a file, be the current folder (or hold it), or already hold files (with
    ``overwrite``: hold anything but a previous run); and its nearest existing folder must take a new folder.
    """
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise ValueError(f"--out {out} is the current folder or holds it; name a new folder below it")
    if target.exists() and not target.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out} already holds files; choose another folder or pass --overwrite")
        if not is_previous_run(target):
            raise ValueError(f"--out {out} holds files that are not a previous run ({', '.join(_foreign(target)[:5])}); "
                             "--overwrite replaces only a run folder")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out} cannot be created: {existing} is a file, not a folder")
    try:
        # The stage folder is made here at write time: try it now, not after the run.
        os.rmdir(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=existing))
    except OSError as exc:
        raise ValueError(f"--out {out} cannot be written: {exc.strerror or exc} in {existing}") from None


@contextmanager
def staged_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a scratch folder; on success it replaces ``out`` atomically, on failure it is deleted.

    ``out`` is replaced only if it is empty or (with ``overwrite``) a previous run, checked again at the end, as
    files may have appeared during the run. Nothing is left behind but ``out`` itself: not the scratch folder, and
    the previous run only until the new one is in place (it is restored if the rename fails).
    """
    check_out_dir(out, overwrite)
    target = out.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    old = None
    try:
        yield stage
        check_out_dir(out, overwrite)
        if target.exists():
            old = stage.with_name(stage.name.replace(".partial-", ".old-", 1))
            os.replace(target, old)
        try:
            os.replace(stage, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
