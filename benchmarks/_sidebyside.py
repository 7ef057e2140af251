"""Run today's release and this tree side by side: the same command, the same data, one after the other.

The base is a git worktree of ``BASE_COMMIT`` in the temporary folder (made once, reused), run by subprocess with
its own sources first on ``PYTHONPATH``, so both sides are the product path a user runs (``python -m ...``).
The machine is shared: every timing is printed with the load average around it.

Example:
    >>> line = load_line()
    >>> line.startswith("load ")
    True
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASE_COMMIT = "abcf9e2"
HERE = Path(__file__).resolve().parents[1]


def load_line() -> str:
    """The 1, 5 and 15-minute load averages and the core count, as one line."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def base_tree(commit: str = BASE_COMMIT) -> Path:
    """A checkout of ``commit`` (a detached git worktree under the temporary folder), made on first use."""
    path = Path(tempfile.gettempdir()) / f"prophettrend-base-{commit}"
    if not (path / "backtests").is_dir():
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "--force", str(path), commit],
                       check=True, capture_output=True)
    return path


@dataclass
class Timed:
    """One timed command: wall seconds, the load around it, and its output."""

    label: str
    seconds: float
    cpu_seconds: float  # user + system time of the command and its children: less sensitive to a busy machine
    load_before: str
    load_after: str
    stdout: str

    def line(self) -> str:
        return (f"{self.label}: {self.seconds:.1f}s wall, {self.cpu_seconds:.1f}s CPU ({self.load_before} before, "
                f"{self.load_after} after)")


def run_module(tree: Path, label: str, module: str, *args: str, env: dict[str, str] | None = None) -> Timed:
    """``python -m module args`` with ``tree``'s sources first, from ``tree``; raises with its stderr on failure."""
    environ = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    before = load_line()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=tree, env=environ, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)
    if done.returncode:
        raise RuntimeError(f"{label}: python -m {module} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return Timed(label, seconds, cpu, before, load_line(), done.stdout)


def same_file(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes."""
    return Path(a).read_bytes() == Path(b).read_bytes()


def differing_rows(a: Path, b: Path) -> list[tuple[str, str]]:
    """The lines that differ between two CSV files of the same length, as (a's, b's); all of them if the lengths
    differ. An empty list: the same bytes."""
    left, right = Path(a).read_text().splitlines(), Path(b).read_text().splitlines()
    if len(left) != len(right):
        return list(zip(left, right)) or [("", "")]
    return [(x, y) for x, y in zip(left, right) if x != y]
