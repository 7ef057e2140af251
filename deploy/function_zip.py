"""The function zip: ``lambda_function.py`` plus the project packages it imports, nothing else.

Which packages ship is found by reading imports (``ast``), starting at ``lambda_function.py``: a project
package ships whole (so engines loaded by name through ``import_module`` are there too), except modules that
import something the layer never carries (Backtrader, Matplotlib, ...), and folders that never ship
(``backtests``, ``deploy``, ``notebooks``, ``tests``, ``benchmarks``). The third-party imports found on the
way are what the layer must provide.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "lambda_function.py").write_text("import pkg\\n")
    >>> (root / "pkg").mkdir(); _ = (root / "pkg" / "__init__.py").write_text("import pandas\\n")
    >>> _ = (root / "pkg" / "bt.py").write_text("import backtrader\\n")
    >>> m = function_manifest(root)
    >>> m.files, sorted(m.third_party), m.excluded
    (['lambda_function.py', 'pkg/__init__.py'], ['pandas'], {'pkg/bt.py': 'imports backtrader'})
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.zipfiles import write_zip

ENTRY = "lambda_function.py"
NEVER_SHIP = frozenset({"backtests", "deploy", "notebooks", "tests", "benchmarks", "build", "docs"})
# Imports that mark a module as research-only: the layer does not carry these distributions.
RESEARCH_ONLY = frozenset({"backtrader", "matplotlib", "dask", "distributed", "jupyter", "IPython", "pytest", "moto"})
SKIP_NAMES = frozenset({"__pycache__"})
SKIP_SUFFIXES = (".pyc", ".pyo")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FunctionManifest:
    """What goes into the function zip, and why some files stay out."""

    root: Path
    files: list[str] = field(default_factory=list)
    third_party: set[str] = field(default_factory=set)
    packages: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)


def imported_names(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Absolute dotted names imported anywhere in ``source`` (function bodies too, relative imports resolved).

    >>> sorted(imported_names("import a.b\\nfrom .c import d\\ndef f():\\n    from e import g", "p.m"))
    ['a.b', 'e', 'p.c']
    """
    names: set[str] = set()
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def _project_packages(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if (p / "__init__.py").is_file() and p.name not in NEVER_SHIP}


def _package_files(root: Path, package: str) -> list[Path]:
    out = []
    for path in sorted((root / package).rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIP_NAMES.intersection(rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        out.append(path)
    return out


def _imports_of(root: Path, rel: str) -> set[str]:
    parts = Path(rel).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    module = ".".join(parts[:-1] if is_package else parts)
    return imported_names((root / rel).read_text(encoding="utf-8"), module, is_package)


def function_manifest(root: Path = PROJECT_ROOT, entry: str = ENTRY) -> FunctionManifest:
    """Walk imports from ``entry`` and list the files the function zip holds (see the module docstring)."""
    root = Path(root)
    if not (root / entry).is_file():
        raise FileNotFoundError(f"{root / entry} not found: the function zip needs the Lambda entry module")
    project = _project_packages(root) | {Path(entry).stem}
    stdlib = set(sys.stdlib_module_names)
    manifest = FunctionManifest(root=root, files=[entry])
    queue = [root / entry]
    seen_packages: set[str] = set()
    while queue:
        path = queue.pop()
        rel = path.relative_to(root)
        names = _imports_of(root, rel.as_posix())
        tops = {n.split(".")[0] for n in names if n}
        if tops & RESEARCH_ONLY and rel.as_posix() != entry:
            continue  # left out of the zip below, so what it imports (backtests, say) never ships either
        for top in sorted(tops):
            if top in project and top not in seen_packages:
                seen_packages.add(top)
                for file in _package_files(root, top):
                    if file.suffix == ".py":
                        queue.append(file)
            elif top in NEVER_SHIP:
                raise ValueError(f"{rel} imports {top!r}, which never ships to Lambda")
            elif top not in project and top not in stdlib and top != "__future__":
                manifest.third_party.add(top)
    manifest.packages = sorted(seen_packages - {Path(entry).stem})
    for package in manifest.packages:
        for file in _package_files(root, package):
            rel = file.relative_to(root).as_posix()
            if file.suffix == ".py":
                tops = {n.split(".")[0] for n in _imports_of(root, rel)}
                bad = sorted(tops & RESEARCH_ONLY)
                if bad:
                    manifest.excluded[rel] = f"imports {', '.join(bad)}"
                    continue
            manifest.files.append(rel)
    # Third-party names seen only in excluded modules do not need the layer.
    manifest.third_party = set()
    for rel in manifest.files:
        if rel.endswith(".py"):
            for name in _imports_of(root, rel):
                top = name.split(".")[0]
                if top and top not in project and top not in stdlib and top != "__future__":
                    manifest.third_party.add(top)
    manifest.files = [manifest.files[0], *sorted(manifest.files[1:])]
    return manifest


def build_function_zip(target: Path, root: Path = PROJECT_ROOT,
                       extra: dict[str, bytes] | None = None) -> tuple[Path, FunctionManifest]:
    """Write the reproducible function zip to ``target``; returns it with its manifest.

    ``extra`` adds files by their name in the zip (the strategy's config and a user's strategy file)."""
    manifest = function_manifest(root)
    if not extra:
        write_zip(root, target, [root / f for f in manifest.files])
        return Path(target), manifest
    import tempfile

    # The extra files are laid out next to copies of the project's, so the zip stays one reproducible write.
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        paths = []
        for rel in manifest.files:
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((root / rel).read_bytes())
            dest.chmod((root / rel).stat().st_mode & 0o777)
            paths.append(dest)
        for rel, data in sorted(extra.items()):
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            paths.append(dest)
            if rel not in manifest.files:
                manifest.files.append(rel)
        write_zip(base, target, paths)
    return Path(target), manifest
