"""Run the built zips like Lambda would, on this machine: unpacked, isolated, offline, read-only but for TMPDIR.

The function zip goes to ``<dir>/task`` (Lambda's ``/var/task``), the layer to ``<dir>/opt`` (``/opt``). The
handler runs in ``python -I -S`` with exactly ``[task, opt/python, stdlib]`` on ``sys.path``, a clean
environment, HOME and the working directory read-only, TMPDIR the only writable place, and no network:
with ``unshare`` (Linux namespaces, root) the task, layer and home are bind-mounted read-only and the process
has no network interface; without it a socket guard refuses connections and the folders are only chmod-ed.
It reports import time, first-cycle time and peak RSS (the process plus CmdStan's subprocesses).

Example:
    >>> "sys.path[:] = " in child_code("/t", "/o", {"now": "x"})
    True
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.zipfiles import extract_zip

MARKER = "PROPHETTREND-SANDBOX-RESULT "

_CHILD = r'''
import json, os, resource, socket, sys, time
t0 = time.perf_counter()
stdlib = [p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p]
sys.path[:] = [TASK, OPT + "/python", *stdlib]

# Before the guard goes in: can a plain socket reach a port the caller listens on? (It must not.)
probe = os.environ.get("SANDBOX_PROBE_PORT")
network = "not probed"
if probe:
    try:
        with socket.create_connection(("127.0.0.1", int(probe)), timeout=2):
            network = "reachable"
    except OSError as exc:
        network = "off (%s)" % (exc.strerror or type(exc).__name__)

def _refuse(*args, **kwargs):
    raise OSError("network is off in the sandbox")

class _GuardedSocket(socket.socket):
    def connect(self, address):
        if self.family != socket.AF_UNIX:
            _refuse()
        return super().connect(address)
    def connect_ex(self, address):
        if self.family != socket.AF_UNIX:
            _refuse()
        return super().connect_ex(address)

socket.socket = _GuardedSocket
socket.getaddrinfo = _refuse
socket.create_connection = _refuse

import lambda_function
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
summary = lambda_function.lambda_handler(EVENT, None)
t_cycle = time.perf_counter() - t1
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
loaded = sorted({m.split(".")[0] for m in sys.modules})
outside = sorted({os.path.dirname(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith((TASK, OPT))
                  and "site-packages" in m.__file__})
print(MARKER + json.dumps({"import_s": t_import, "cycle_s": t_cycle, "peak_rss_mb": self_kb / 1024,
                           "child_peak_rss_mb": child_kb / 1024, "summary": summary, "modules": loaded,
                           "outside_modules": outside, "network": network, "python": sys.version.split()[0]}, default=str))
'''


def child_code(task: str, opt: str, event: dict) -> str:
    """The ``-c`` program the sandboxed interpreter runs."""
    head = f"TASK = {task!r}\nOPT = {opt!r}\nEVENT = {event!r}\nMARKER = {MARKER!r}\n"
    return head + _CHILD


@dataclass
class SandboxRun:
    returncode: int
    import_s: float | None
    cycle_s: float | None
    peak_rss_mb: float | None
    child_peak_rss_mb: float | None
    summary: dict[str, Any] | None
    modules: list[str]
    outside_modules: list[str]
    isolation: str  # "namespaces" | "guard"
    stderr: str
    tmp_files: list[str]
    python: str | None
    network: str


def unshare_available() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True)
    return probe.returncode == 0


def unpack(function_zip: Path, layer_zip: Path, root: Path) -> tuple[Path, Path]:
    """Unpack the zips into ``root/task`` and ``root/opt``; returns both folders."""
    task, opt = Path(root) / "task", Path(root) / "opt"
    extract_zip(function_zip, task)
    extract_zip(layer_zip, opt)
    return task, opt


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def run_handler(function_zip: Path, layer_zip: Path, root: Path, event: dict, python: str = sys.executable,
                env: dict[str, str] | None = None, timeout_s: float = 600) -> SandboxRun:
    """Unpack into the empty folder ``root`` and run one handler call there (see the module docstring)."""
    root = Path(root)
    task, opt = unpack(function_zip, layer_zip, root)
    home, tmp = root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    child_env = {"HOME": str(home), "TMPDIR": str(tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                 "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "prophettrend",
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "BROKER": "paper", "MARKET_DATA": "sample",
                 **(env or {})}
    cmd = [python, "-I", "-S", "-c", child_code(str(task), str(opt), event)]
    isolation = "namespaces" if unshare_available() else "guard"
    for folder in (task, opt, home):
        _read_only(folder)
    if isolation == "namespaces":
        mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,ro,bind {d}" for d in (task, opt, home))
        cmd = ["unshare", "-n", "-m", "sh", "-c", f'{mounts} && cd {task} && exec "$@"', "sandbox", *cmd]
    result = subprocess.run(cmd, cwd=task, env=child_env, capture_output=True, text=True, timeout=timeout_s)
    data: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
    return SandboxRun(
        returncode=result.returncode, import_s=data.get("import_s"), cycle_s=data.get("cycle_s"),
        peak_rss_mb=data.get("peak_rss_mb"), child_peak_rss_mb=data.get("child_peak_rss_mb"),
        summary=data.get("summary"), modules=data.get("modules", []), outside_modules=data.get("outside_modules", []),
        isolation=isolation, stderr=result.stderr[-4000:], python=data.get("python"),
        network=data.get("network", "not run"), tmp_files=sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()))


def cleanup(root: Path) -> None:
    """Remove a sandbox folder (restoring write bits first)."""
    for p in Path(root).rglob("*"):
        if p.is_dir() and not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(root, ignore_errors=True)
