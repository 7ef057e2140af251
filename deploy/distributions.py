"""Which installed distributions the Lambda layer needs: from import names to a dependency closure.

Markers are evaluated for the layer's target (Lambda: Linux, CPython 3.12), not for this machine, so the
same closure is computed here and inside a staged ``pip --target`` folder.

Example:
    >>> from packaging.requirements import Requirement
    >>> marker_env("3.12", "x86_64")["python_version"], marker_env("3.12", "arm64")["platform_machine"]
    ('3.12', 'aarch64')
    >>> requires = {"a": ["b", "c; python_version < '3.8'"], "b": ["d"], "c": [], "d": []}
    >>> sorted(closure(["a"], lambda n: [Requirement(r) for r in requires[n]], marker_env("3.12", "x86_64")))
    ['a', 'b', 'd']
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path
from typing import Callable, Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The python3.12 Lambda runtime ships these; bundling them would only add megabytes and version skew.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
# Prophet declares Matplotlib but imports it only for plots; these and their orphaned dependencies go.
RESEARCH_ONLY = frozenset({"matplotlib", "backtrader", "dask", "distributed", "jupyter", "jupyterlab",
                           "notebook", "ipykernel", "ipython", "pytest", "moto", "plotly"})


def marker_env(python_version: str, arch: str) -> dict[str, str]:
    """The PEP 508 marker environment of a Lambda runtime (Amazon Linux 2023)."""
    machine = "aarch64" if arch in ("arm64", "aarch64") else "x86_64"
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{python_version}.0",
        "extra": "",
    }


def _applies(req: Requirement, env: dict[str, str]) -> bool:
    # Requirements behind an extra ("pandas[test]") are not runtime dependencies.
    return req.marker is None or req.marker.evaluate(env)


def closure(roots: Iterable[str], requires: Callable[[str], list[Requirement]], env: dict[str, str],
            exclude: Iterable[str] = ()) -> set[str]:
    """Canonical names reachable from ``roots`` through ``requires``, not entering ``exclude``."""
    skip = {canonicalize_name(n) for n in exclude}
    keep: set[str] = set()
    stack = [canonicalize_name(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in keep or name in skip:
            continue
        keep.add(name)
        for req in requires(name):
            if _applies(req, env):
                stack.append(canonicalize_name(req.name))
    return keep


class DistributionSet:
    """The distributions found on a set of paths (``sys.path`` by default, or a staged layer folder)."""

    def __init__(self, paths: list[str] | None = None):
        found = md.distributions() if paths is None else md.distributions(path=paths)
        self.by_name: dict[str, md.Distribution] = {}
        for dist in found:
            name = canonicalize_name(dist.metadata["Name"] or "")
            # The first one on the path wins, as with imports.
            self.by_name.setdefault(name, dist)

    def requires(self, name: str) -> list[Requirement]:
        dist = self.by_name.get(canonicalize_name(name))
        if dist is None:
            raise LookupError(f"distribution {name!r} is required but not installed")
        return [Requirement(r) for r in (dist.requires or [])]

    def version(self, name: str) -> str:
        return self.by_name[canonicalize_name(name)].version

    def top_level_map(self) -> dict[str, list[str]]:
        """Import name -> canonical distribution names providing it."""
        out: dict[str, list[str]] = {}
        for name, dist in self.by_name.items():
            tops = (dist.read_text("top_level.txt") or "").split()
            if not tops:
                tops = sorted({Path(str(f)).parts[0].removesuffix(".py") for f in (dist.files or [])
                               if not str(f).startswith("..") and ".dist-info" not in str(f).split("/")[0]
                               and not str(f).endswith(".pth")})
            for top in tops:
                out.setdefault(top, []).append(name)
        return out

    def roots_for_imports(self, import_names: Iterable[str]) -> list[str]:
        """Distribution names for third-party import names; a clear error when one is not installed."""
        mapping = self.top_level_map()
        roots: set[str] = set()
        missing = []
        for name in sorted(import_names):
            if name in mapping:
                roots.update(mapping[name])
            else:
                missing.append(name)
        if missing:
            raise LookupError(f"the function imports {', '.join(missing)}, which no installed distribution provides")
        return sorted(roots)
