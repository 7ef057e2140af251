"""``python -m deploy build``: the function zip and the layer zip, then the size table and the budget check.

Example:
    >>> opts = BuildOptions(arch="arm64")
    >>> opts.target.platforms[1], opts.layer_zip.name
    ('manylinux2014_aarch64', 'layer-py3.12-arm64.zip')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deploy.function_zip import PROJECT_ROOT, FunctionManifest, build_function_zip
from deploy.layer import LAMBDA_UNZIPPED_LIMIT, MB, LayerBuild, LayerTarget, SizeRow, SizeTable, build_layer
from deploy.zipfiles import unzipped_size


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path = Path("build/lambda")
    python_version: str = "3.12"
    arch: str = "x86_64"
    source: str = "index"  # index | installed
    compile_bytecode: bool = False
    strip: bool = True
    budget_mb: float = LAMBDA_UNZIPPED_LIMIT / MB
    include_runtime_provided: bool = False
    root: Path = PROJECT_ROOT
    zip_level: int = 9
    # the strategy's config and a user's strategy file, packed beside lambda_function.py (deploy.strategy_bundle)
    extra_files: dict = field(default_factory=dict, hash=False, compare=False)
    extra_third_party: frozenset = frozenset()  # deflate level of the layer zip; 1 is much faster and about 10% bigger

    @property
    def target(self) -> LayerTarget:
        return LayerTarget(self.python_version, self.arch)

    @property
    def function_zip(self) -> Path:
        return self.out_dir / "function.zip"

    @property
    def layer_zip(self) -> Path:
        return self.out_dir / f"layer-py{self.python_version}-{self.arch}.zip"


@dataclass
class BuildResult:
    function_zip: Path
    layer_zip: Path
    manifest: FunctionManifest
    layer: LayerBuild
    table: SizeTable = field(repr=False, default=None)  # type: ignore[assignment]


def build(opts: BuildOptions) -> BuildResult:
    """Build both zips for ``opts``; raises ``BudgetError`` (one line) when they do not fit Lambda."""
    function_zip, manifest = build_function_zip(opts.function_zip, opts.root, opts.extra_files)
    manifest.third_party |= set(opts.extra_third_party)
    layer = build_layer(manifest.third_party, opts.layer_zip, opts.target, source=opts.source,
                        compile_bytecode=opts.compile_bytecode, strip=opts.strip,
                        include_runtime_provided=opts.include_runtime_provided,
                        budget_bytes=int(opts.budget_mb * MB), function_unzipped=unzipped_size(function_zip),
                        zip_level=opts.zip_level)
    table = SizeTable(
        rows=[SizeRow("function.zip", function_zip.stat().st_size, unzipped_size(function_zip)),
              SizeRow(opts.layer_zip.name, opts.layer_zip.stat().st_size, unzipped_size(opts.layer_zip))],
        biggest=layer.biggest, unzipped_limit=int(opts.budget_mb * MB))
    result = BuildResult(function_zip, opts.layer_zip, manifest, layer, table)
    table.check()
    return result
