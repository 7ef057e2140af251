"""The Lambda layer: third-party packages under ``python/``, built without Docker, slimmed, zipped reproducibly.

Two sources, one pipeline:

- ``index``: ``pip install --platform manylinux... --only-binary=:all: --python-version 3.12 --no-compile
  --target <stage>/python`` with the versions installed here pinned, so the layer runs what the tests ran;
- ``installed``: the same closure copied from this machine's site-packages (no network; used by the
  artifact test for this machine's Python).

Then ``slim()`` removes what a Lambda cycle never loads (measured safe: tests, stubs, C sources,
Matplotlib's stack, non-English ``holidays`` translations, CmdStan's build tree, symbols in extension
modules) while keeping exec bits (Prophet's CmdStan model binary is run as a subprocess).

Example:
    >>> LayerTarget("3.12", "arm64").platforms[0]
    'manylinux_2_28_aarch64'
    >>> human_mb(52_428_800)
    '50.0 MB'
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from clitools import UserError
from deploy.distributions import RESEARCH_ONLY, RUNTIME_PROVIDED, DistributionSet, closure, marker_env
from deploy.zipfiles import write_zip

MB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MB  # function + all layers, unzipped
LAMBDA_DIRECT_UPLOAD_LIMIT = 50 * MB  # a zip sent in the API call itself; larger ones go through S3
KEEP_HOLIDAY_LOCALES = frozenset({"en_US"})
MUST_BE_EXECUTABLE = ("prophet/stan_model/prophet_model.bin",)
FORBIDDEN_TOPS = frozenset({"backtrader", "matplotlib", "dask", "distributed", "jupyter", "jupyter_core",
                            "notebook", "pytest", "_pytest", "moto", "IPython", "ipykernel"})
# Left out although the function's code names them: pyarrow (79 MB of a 200 MB layer) serves only the Parquet
# files earlier releases left in marketdata.cache (its own format, .npy, needs numpy only); pandas imports it
# optionally.
NOT_IN_LAYER = frozenset({"pyarrow"})
# When a layer does carry pyarrow (NOT_IN_LAYER emptied), it reads Parquet cache files of earlier releases: Flight RPC, S3/GCS/Azure/HDFS filesystems and ORC are
# optional imports there (checked with readelf: no kept library NEEDs them); the copies of libarrow_python
# that are not its SONAME are the wheel's flattened symlinks.
PYARROW_UNUSED = ("libarrow_flight.so*", "_flight*.so", "libarrow_s3.so*", "_s3fs*.so", "_gcsfs*.so", "_azurefs*.so",
                  "_hdfs*.so", "_orc*.so", "libarrow_python*.so", "libarrow_python*.so.*.*", "libarrow_python_flight.so*")
SOURCE_SUFFIXES = (".pyi", ".c", ".h", ".cpp", ".hpp", ".cc", ".cxx", ".pyx", ".pxd", ".pxi")


class BudgetError(UserError):
    """The artifacts do not fit Lambda's limits."""


def human_mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


@dataclass(frozen=True)
class LayerTarget:
    """The runtime a layer is built for; ``platforms`` are the wheel tags pip may pick (AL2023 has glibc 2.34)."""

    python_version: str = "3.12"
    arch: str = "x86_64"

    @property
    def machine(self) -> str:
        return "aarch64" if self.arch == "arm64" else "x86_64"

    @property
    def platforms(self) -> list[str]:
        m = self.machine
        return [f"manylinux_2_28_{m}", f"manylinux2014_{m}", f"manylinux_2_17_{m}"]


@dataclass
class SlimReport:
    """Bytes removed per rule, and how many extension modules lost their symbols."""

    removed: dict[str, int] = field(default_factory=dict)
    stripped: int = 0
    strip_failed: int = 0

    def add(self, rule: str, size: int) -> None:
        self.removed[rule] = self.removed.get(rule, 0) + size


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path, report: SlimReport, rule: str) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        report.add(rule, tree_size(path))
        shutil.rmtree(path)
    else:
        report.add(rule, path.lstat().st_size)
        path.unlink()


# --- staging -------------------------------------------------------------------------------------------

def layer_roots(import_names: Iterable[str], dists: DistributionSet | None = None,
                include_runtime_provided: bool = False) -> list[str]:
    """Distribution names the layer starts from (those providing the function's third-party imports)."""
    dists = dists or DistributionSet()
    roots = dists.roots_for_imports(import_names)
    skip = set(RESEARCH_ONLY) | NOT_IN_LAYER | (set() if include_runtime_provided else set(RUNTIME_PROVIDED))
    return [r for r in roots if r not in skip]


def stage_from_index(requirements: list[str], python_dir: Path, target: LayerTarget,
                     pip: list[str] | None = None, quiet: bool = True) -> None:
    """``pip install`` manylinux wheels for ``target`` into ``python_dir`` (needs the package index)."""
    pip = pip or [sys.executable, "-m", "pip"]
    cmd = [*pip, "install", "--only-binary=:all:", "--python-version", target.python_version,
           "--implementation", "cp", "--no-compile", "--disable-pip-version-check", "--no-warn-conflicts",
           "--target", str(python_dir)]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    if quiet:
        cmd.append("--quiet")
    result = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-1:] or ["pip failed"]
        raise UserError(f"pip could not build the layer for python{target.python_version} {target.arch}: {last[0]}")


def stage_from_installed(roots: list[str], python_dir: Path, dists: DistributionSet | None = None,
                         include_runtime_provided: bool = False) -> list[str]:
    """Copy the dependency closure of ``roots`` from this interpreter's site-packages; returns the names."""
    dists = dists or DistributionSet()
    env = marker_env(f"{sys.version_info.major}.{sys.version_info.minor}", os.uname().machine)
    exclude = set(RESEARCH_ONLY) | NOT_IN_LAYER | (set() if include_runtime_provided else set(RUNTIME_PROVIDED))
    names = sorted(closure(roots, dists.requires, env, exclude))
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist = dists.by_name[name]
        for rel in dist.files or []:
            rel_s = str(rel)
            # Console scripts live outside site-packages; bytecode is rebuilt (or not) on purpose later.
            if rel_s.startswith("..") or "__pycache__" in rel_s or rel_s.endswith((".pyc", ".pth")):
                continue
            src = Path(dist.locate_file(rel))
            if not src.is_file():
                continue
            dest = python_dir / rel_s
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    return names


# --- slimming ------------------------------------------------------------------------------------------

def drop_unneeded_distributions(python_dir: Path, roots: list[str], target: LayerTarget,
                                report: SlimReport, include_runtime_provided: bool = False) -> list[str]:
    """Remove every staged distribution outside the closure of ``roots`` (Matplotlib's stack, boto3...)."""
    staged = DistributionSet([str(python_dir)])
    exclude = set(RESEARCH_ONLY) | NOT_IN_LAYER | (set() if include_runtime_provided else set(RUNTIME_PROVIDED))
    keep = closure(roots, staged.requires, marker_env(target.python_version, target.arch), exclude)
    dropped = []
    for name, dist in sorted(staged.by_name.items()):
        if name in keep:
            continue
        dropped.append(name)
        for rel in dist.files or []:
            path = python_dir / str(rel)
            if path.is_file() and python_dir in path.resolve().parents:
                report.add("unneeded distributions", path.stat().st_size)
                path.unlink()
        info = Path(str(dist._path))  # type: ignore[attr-defined]  # the .dist-info folder itself
        if info.exists():
            _remove(info, report, "unneeded distributions")
    _prune_empty_dirs(python_dir)
    return dropped


def _prune_empty_dirs(root: Path) -> None:
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()


def _is_under_libs(path: Path, root: Path) -> bool:
    # auditwheel's vendored libraries (numpy.libs/, prophet.libs/ ...) are patched with patchelf; stripping
    # them can corrupt the patched headers, so they are left alone.
    return any(part.endswith(".libs") for part in path.relative_to(root).parts)


def _strip_tool(machine: str) -> list[str] | None:
    candidates = ["strip"] if machine == os.uname().machine else [f"{machine}-linux-gnu-strip", "llvm-strip"]
    for tool in candidates:
        if shutil.which(tool):
            return [tool, "--strip-unneeded"]
    return None


def slim(python_dir: Path, target: LayerTarget | None = None, strip: bool = True) -> SlimReport:
    """Remove what a Lambda cycle never loads; see the module docstring for the rules.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for f in ["pkg/tests/test_x.py", "pkg/mod.py", "pkg/mod.pyi", "pkg/_ext.c", "holidays/locale/de/x.mo",
    ...           "holidays/locale/en_US/x.mo"]:
    ...     (d / f).parent.mkdir(parents=True, exist_ok=True); _ = (d / f).write_text("x")
    >>> r = slim(d, strip=False)
    >>> sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    ['holidays/locale/en_US/x.mo', 'pkg/mod.py']
    """
    target = target or LayerTarget()
    python_dir = Path(python_dir)
    report = SlimReport()
    _remove(python_dir / "bin", report, "console scripts")
    for path in sorted(python_dir.rglob("*"), reverse=True):
        if not path.exists():
            continue
        if path.is_dir() and path.name in ("tests", "__pycache__"):
            _remove(path, report, "tests and bytecode")
        elif path.is_file() and path.name.endswith(SOURCE_SUFFIXES):
            _remove(path, report, "stubs and C sources")
    locale = python_dir / "holidays" / "locale"
    if locale.is_dir():
        for child in sorted(locale.iterdir()):
            if child.name not in KEEP_HOLIDAY_LOCALES:
                _remove(child, report, "holidays translations")
    # Prophet points cmdstanpy at its bundled CmdStan only to pass a "makefile exists" check; the model is a
    # prebuilt binary, so the compiler, headers and object files never run in Lambda.
    for cmdstan in sorted((python_dir / "prophet" / "stan_model").glob("cmdstan-*")):
        for child in sorted(cmdstan.iterdir()):
            if child.name != "makefile":
                _remove(child, report, "CmdStan build tree")
    pyarrow = python_dir / "pyarrow"
    if pyarrow.is_dir():
        for pattern in PYARROW_UNUSED:
            for path in sorted(pyarrow.glob(pattern)):
                _remove(path, report, "pyarrow: Flight, cloud filesystems, ORC")
    if strip:
        tool = _strip_tool(target.machine)
        for so in sorted(python_dir.rglob("*.so*")):
            if not so.is_file() or so.is_symlink() or _is_under_libs(so, python_dir) or ".so" not in so.name:
                continue
            before = so.stat().st_size
            ok = tool is not None and subprocess.run([*tool, str(so)], capture_output=True).returncode == 0
            if ok:
                report.stripped += 1
                report.add("strip --strip-unneeded", before - so.stat().st_size)
            else:
                report.strip_failed += 1
    _prune_empty_dirs(python_dir)
    return report


def check_layer(python_dir: Path) -> None:
    """Fail when research-only packages slipped in, or Prophet's model binary lost its exec bit."""
    bad = sorted(p.name for p in Path(python_dir).iterdir() if p.name in FORBIDDEN_TOPS)
    if bad:
        raise BudgetError(f"the layer must not ship {', '.join(bad)}")
    for rel in MUST_BE_EXECUTABLE:
        path = Path(python_dir) / rel
        if path.exists() and not os.stat(path).st_mode & stat.S_IXUSR:
            raise BudgetError(f"{rel} lost its exec bit; cmdstanpy could not run it")


def find_python(version: str) -> str | None:
    """A working interpreter for ``version`` (this one, pyenv's, then PATH), used to precompile and to benchmark."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(c / "bin" / "python") for c in sorted(pyenv.glob(f"{version}.*"), reverse=True)]
    candidates += [found for found in [shutil.which(f"python{version}")] if found]
    for exe in candidates:
        # pyenv shims exist on PATH even when they cannot run, so each candidate is asked for its version.
        probe = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    return None


def precompile(python_dir: Path, version: str) -> str:
    """Write ``__pycache__`` with the target interpreter; unchecked-hash pycs since the layer is read-only."""
    exe = find_python(version)
    if exe is None:
        raise UserError(f"--compile needs a Python {version} interpreter (python{version} on PATH or pyenv)")
    # -d: tracebacks show the path the layer has inside Lambda.
    subprocess.run([exe, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    "-d", "/opt/python", str(python_dir)], check=True, capture_output=True)
    return exe


# --- size table ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SizeRow:
    name: str
    zipped: int
    unzipped: int


@dataclass
class SizeTable:
    rows: list[SizeRow]
    biggest: list[tuple[str, int]] = field(default_factory=list)
    unzipped_limit: int = LAMBDA_UNZIPPED_LIMIT

    @property
    def total_unzipped(self) -> int:
        return sum(r.unzipped for r in self.rows)

    def render(self) -> str:
        """A plain-text table against Lambda's limits."""
        lines = [f"{'artifact':<34}{'zipped':>11}{'unzipped':>11}"]
        for r in self.rows:
            note = "" if r.zipped <= LAMBDA_DIRECT_UPLOAD_LIMIT else "  (> 50 MB: uploaded through S3)"
            lines.append(f"{r.name:<34}{human_mb(r.zipped):>11}{human_mb(r.unzipped):>11}{note}")
        status = "OK" if self.total_unzipped <= self.unzipped_limit else "OVER BUDGET"
        lines.append(f"{'total (limit ' + human_mb(self.unzipped_limit) + ' unzipped)':<34}{'':>11}"
                     f"{human_mb(self.total_unzipped):>11}  {status}")
        if self.biggest:
            lines.append("biggest in the layer: " + ", ".join(f"{n} {human_mb(s)}" for n, s in self.biggest))
        return "\n".join(lines)

    def check(self) -> None:
        """Raise ``BudgetError`` with what to cut when over Lambda's unzipped limit."""
        if self.total_unzipped > self.unzipped_limit:
            over = self.total_unzipped - self.unzipped_limit
            top = ", ".join(f"{n} {human_mb(s)}" for n, s in self.biggest[:3])
            raise BudgetError(f"function + layer unzip to {human_mb(self.total_unzipped)}, over the "
                              f"{human_mb(self.unzipped_limit)} limit by {human_mb(over)}; biggest: {top}")


def biggest_packages(python_dir: Path, n: int = 5) -> list[tuple[str, int]]:
    sizes = []
    for child in Path(python_dir).iterdir():
        if child.name.endswith(".dist-info"):
            continue
        sizes.append((child.name, tree_size(child) if child.is_dir() else child.stat().st_size))
    return sorted(sizes, key=lambda t: (-t[1], t[0]))[:n]


# --- one call ------------------------------------------------------------------------------------------

@dataclass
class LayerBuild:
    zip_path: Path
    roots: list[str]
    slim: SlimReport
    unzipped_before_slim: int
    unzipped: int
    biggest: list[tuple[str, int]]
    compiled_with: str | None = None


def build_layer(import_names: Iterable[str], zip_path: Path, target: LayerTarget, source: str = "index",
                compile_bytecode: bool = False, strip: bool = True, include_runtime_provided: bool = False,
                keep_stage: Path | None = None, budget_bytes: int | None = None,
                function_unzipped: int = 0, zip_level: int = 9) -> LayerBuild:
    """Stage, slim, check and zip the layer for ``target``; see the module docstring."""
    dists = DistributionSet()
    roots = layer_roots(import_names, dists, include_runtime_provided)
    with tempfile.TemporaryDirectory(prefix="pt-layer-") as tmp:
        stage = Path(keep_stage) if keep_stage else Path(tmp)
        python_dir = stage / "python"
        if python_dir.exists():
            shutil.rmtree(python_dir)
        if source == "index":
            requirements = [f"{name}=={dists.version(name)}" for name in roots]
            stage_from_index(requirements, python_dir, target)
        elif source == "installed":
            here = f"{sys.version_info.major}.{sys.version_info.minor}"
            if target.python_version != here or target.machine != os.uname().machine:
                raise UserError(f"--source installed builds only for this machine (python{here} "
                                f"{os.uname().machine}); use --source index for python{target.python_version} {target.arch}")
            stage_from_installed(roots, python_dir, dists, include_runtime_provided)
        else:
            raise UserError(f"unknown layer source {source!r}; choose index or installed")
        before = tree_size(python_dir)
        report = SlimReport()
        drop_unneeded_distributions(python_dir, roots, target, report, include_runtime_provided)
        slim_report = slim(python_dir, target, strip=strip)
        for rule, size in report.removed.items():
            slim_report.add(rule, size)
        check_layer(python_dir)
        if budget_bytes is not None:
            # Checked on the unzipped tree, before the slow zip, so an over-budget build fails fast and
            # leaves no layer zip behind that `up` could pick up.
            SizeTable([SizeRow("function", 0, function_unzipped), SizeRow("layer", 0, tree_size(python_dir))],
                      biggest_packages(python_dir), budget_bytes).check()
        compiled_with = precompile(python_dir, target.python_version) if compile_bytecode else None
        write_zip(stage, zip_path, [p for p in sorted(python_dir.rglob("*")) if p.is_file()], level=zip_level)
        return LayerBuild(Path(zip_path), roots, slim_report, before, tree_size(python_dir),
                          biggest_packages(python_dir), compiled_with)
