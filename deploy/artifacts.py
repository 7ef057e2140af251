"""Built artifacts that ``deploy up`` can reuse: a layer zip is recorded with what it was built from.

``deploy build`` writes, next to each layer zip, ``<zip>.json``: the options that shape the layer (Python
version, architecture, package source, ``--compile``, ``--strip``), the distributions it starts from with the
versions installed here, a hash of the layer-building code, and the zip's SHA-256. ``deploy up`` reuses a layer
whose record matches what it would build and whose bytes are unchanged, and builds only what is missing. The
function zip is always rebuilt (under a second, and it must hold the code as it is now).

Example:
    >>> fp = LayerFingerprint("3.12", "arm64", "index", True, True, (("pandas", "2.2.3"),), "abc")
    >>> fp.describe()
    'python3.12 arm64, compiled, stripped, from index'
    >>> LayerFingerprint.from_json(fp.to_json()) == fp
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.build import BuildOptions
from deploy.zipfiles import sha256_of

_LAYER_CODE = ("layer.py", "distributions.py")  # a change in how layers are built makes old ones stale


@dataclass(frozen=True)
class LayerFingerprint:
    """Everything that decides a layer zip's content."""

    python_version: str
    arch: str
    source: str
    compile_bytecode: bool
    strip: bool
    pins: tuple[tuple[str, str], ...]  # (distribution, version) the layer starts from
    code: str  # hash of the layer-building modules

    def describe(self) -> str:
        return (f"python{self.python_version} {self.arch}, {'compiled' if self.compile_bytecode else 'not compiled'}, "
                f"{'stripped' if self.strip else 'not stripped'}, from {self.source}")

    def to_json(self) -> dict:
        return {**asdict(self), "pins": [list(p) for p in self.pins]}

    @classmethod
    def from_json(cls, data: dict) -> "LayerFingerprint":
        fields = {k: data[k] for k in cls.__dataclass_fields__}
        fields["pins"] = tuple(tuple(p) for p in fields["pins"])
        return cls(**fields)


@dataclass(frozen=True)
class BuiltLayer:
    """A layer zip on disk with its record."""

    zip_path: Path
    fingerprint: LayerFingerprint
    sha256: str
    built_at: str


def record_path(layer_zip: Path) -> Path:
    """>>> record_path(Path("build/lambda/layer-py3.12-arm64.zip")).name
    'layer-py3.12-arm64.zip.json'
    """
    return Path(f"{layer_zip}.json")


def _code_hash() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _LAYER_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(opts: BuildOptions, third_party: set[str] | frozenset[str]) -> LayerFingerprint:
    """What a layer built with ``opts`` for these third-party imports would be made of."""
    from deploy.distributions import DistributionSet
    from deploy.layer import layer_roots

    dists = DistributionSet()
    roots = layer_roots(third_party, dists, opts.include_runtime_provided)
    pins = tuple(sorted((r, str(dists.version(r))) for r in roots))
    return LayerFingerprint(opts.python_version, opts.arch, opts.source, opts.compile_bytecode, opts.strip, pins,
                            _code_hash())


def record_layer(layer_zip: Path, fp: LayerFingerprint) -> BuiltLayer:
    """Write the record of a freshly built layer zip."""
    built = BuiltLayer(Path(layer_zip), fp, sha256_of(layer_zip),
                       dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    record_path(layer_zip).write_text(json.dumps({"fingerprint": fp.to_json(), "sha256": built.sha256,
                                                  "built_at": built.built_at}, indent=2) + "\n")
    return built


def built_layers(out_dir: Path, python_version: str | None = None) -> list[BuiltLayer]:
    """The recorded layer zips in ``out_dir`` whose bytes still match their record, newest first."""
    found = []
    for record in sorted(Path(out_dir).glob("layer-*.zip.json")):
        zip_path = Path(str(record)[: -len(".json")])
        try:
            data = json.loads(record.read_text())
            fp = LayerFingerprint.from_json(data["fingerprint"])
            if not zip_path.is_file() or sha256_of(zip_path) != data["sha256"]:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable record is no promise: that layer is rebuilt
        if python_version and fp.python_version != python_version:
            continue
        found.append(BuiltLayer(zip_path, fp, data["sha256"], str(data.get("built_at", ""))))
    return sorted(found, key=lambda b: b.built_at, reverse=True)


def reusable_layer(opts: BuildOptions, wanted: LayerFingerprint) -> BuiltLayer | None:
    """The built layer at ``opts.layer_zip`` if it is exactly what ``wanted`` describes."""
    for built in built_layers(opts.out_dir, opts.python_version):
        if built.zip_path == opts.layer_zip and built.fingerprint == wanted:
            return built
    return None


def why_not_reused(opts: BuildOptions, wanted: LayerFingerprint) -> str:
    """Why the layer at ``opts.layer_zip`` cannot serve: missing, changed, or built with other options.

    >>> import tempfile
    >>> why_not_reused(BuildOptions(out_dir=Path(tempfile.mkdtemp())), None)
    'no layer-py3.12-x86_64.zip built yet'
    """
    record = record_path(opts.layer_zip)
    if not opts.layer_zip.is_file():
        return f"no {opts.layer_zip.name} built yet"
    if not record.is_file():
        return f"{opts.layer_zip.name} has no build record (built before records were kept)"
    try:
        data = json.loads(record.read_text())
        old = LayerFingerprint.from_json(data["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{record.name} is unreadable"
    if sha256_of(opts.layer_zip) != data.get("sha256"):
        return f"{opts.layer_zip.name} changed since it was built"
    differing = [name for name in LayerFingerprint.__dataclass_fields__
                 if getattr(old, name) != getattr(wanted, name)]
    labels = {"compile_bytecode": "--compile", "strip": "--no-strip", "source": "--source", "arch": "--arch",
              "python_version": "--python-version", "pins": "installed package versions",
              "code": "the layer-building code"}
    return f"{opts.layer_zip.name} was built with other {', '.join(labels[d] for d in differing)}"


@dataclass
class Prepared:
    """The two zips ``up`` deploys, and what was reused or (to be) built."""

    function_zip: Path
    layer_zip: Path
    reused: BuiltLayer | None
    notes: list[str]
    table: object = None  # deploy.layer.SizeTable once both zips exist


def prepare(opts: BuildOptions, dry_run: bool = False, say=print) -> Prepared:
    """Rebuild the function zip, reuse the layer when it matches, else build it (``dry_run``: only say so)."""
    from deploy.function_zip import build_function_zip, function_manifest
    from deploy.layer import MB, SizeRow, SizeTable, build_layer
    from deploy.zipfiles import unzipped_size

    if dry_run:
        manifest = function_manifest(opts.root)
    else:
        _, manifest = build_function_zip(opts.function_zip, opts.root, opts.extra_files)
    third_party = set(manifest.third_party) | set(opts.extra_third_party)
    wanted = fingerprint(opts, third_party)
    reused = reusable_layer(opts, wanted)
    verb = "rebuild" if dry_run else "rebuilt"
    notes = [f"{opts.function_zip} ({verb} from this tree: under a second)"]
    if reused:
        notes.append(f"{reused.zip_path} reused ({wanted.describe()}; built {reused.built_at})")
    else:
        why = why_not_reused(opts, wanted)
        notes.append(f"{opts.layer_zip} {'to be built' if dry_run else 'built'} ({wanted.describe()}): {why}")
        if not dry_run:
            say(f"building the layer: {wanted.describe()} ({why}) ...")
            layer = build_layer(third_party, opts.layer_zip, opts.target, source=opts.source,
                                compile_bytecode=opts.compile_bytecode, strip=opts.strip,
                                include_runtime_provided=opts.include_runtime_provided,
                                budget_bytes=int(opts.budget_mb * MB),
                                function_unzipped=unzipped_size(opts.function_zip), zip_level=opts.zip_level)
            record_layer(layer.zip_path, wanted)
    prepared = Prepared(opts.function_zip, opts.layer_zip, reused, notes)
    if not dry_run:
        prepared.table = SizeTable(
            rows=[SizeRow("function.zip", opts.function_zip.stat().st_size, unzipped_size(opts.function_zip)),
                  SizeRow(opts.layer_zip.name, opts.layer_zip.stat().st_size, unzipped_size(opts.layer_zip))],
            unzipped_limit=int(opts.budget_mb * MB))
        prepared.table.check()
    return prepared
