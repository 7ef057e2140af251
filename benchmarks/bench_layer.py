"""Size table of the Lambda artifacts for python3.12 x86_64 and arm64 (built from the package index), and the
cold start (import + first cycle) and peak memory of the artifact run in the offline sandbox.

Run by hand (needs the package index; takes a few minutes):

    python benchmarks/bench_layer.py                  # both arches, sandbox with python3.12 on x86_64
    python benchmarks/bench_layer.py --arch x86_64 --runs 3 --out build/bench

The x86_64 python3.12 layer is also executed (when a python3.12 interpreter is found, e.g. pyenv) exactly as
Lambda would load it; the same is done for this machine's Python with a layer copied from site-packages. The
base release (``benchmarks/_sidebyside.py``) builds its python3.12 layer in the same run, by subprocess, and the
two layers' sizes are printed side by side (``--no-base`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.build import BuildOptions, build  # noqa: E402
from deploy.layer import BudgetError, find_python, human_mb  # noqa: E402
from deploy.sandbox import cleanup, run_handler  # noqa: E402
from benchmarks._sidebyside import BASE_COMMIT, base_tree, load_line  # noqa: E402

EVENT = {"now": "2022-06-01T15:45:00-04:00"}


def sandbox_runs(function_zip: Path, layer_zip: Path, python: str, runs: int) -> dict:
    results = []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="pt-bench-"))
        try:
            r = run_handler(function_zip, layer_zip, root, EVENT, python=python)
        finally:
            cleanup(root)
        if r.returncode != 0 or not r.summary:
            raise SystemExit(f"sandbox run failed ({python}):\n{r.stderr}")
        results.append(r)
    pick = lambda attr: statistics.median(getattr(r, attr) for r in results)  # noqa: E731
    return {"python": results[0].python, "isolation": results[0].isolation, "status": results[0].summary["status"],
            "orders": len(results[0].summary.get("orders", [])), "import_s": pick("import_s"),
            "cycle_s": pick("cycle_s"), "peak_rss_mb": max(max(r.peak_rss_mb, r.child_peak_rss_mb) for r in results),
            "runs": runs}


def base_layer(arch: str, out: Path, compile_bytecode: bool = False) -> dict:
    """The base release's python3.12 layer, built by its own code in its own checkout: zipped and unzipped bytes."""
    code = ("import json, sys\nfrom pathlib import Path\nfrom deploy.build import BuildOptions, build\n"
            f"r = build(BuildOptions(out_dir=Path({str(out)!r}), python_version='3.12', arch={arch!r}, source='index', "
            f"compile_bytecode={compile_bytecode!r}))\n"
            "row = [x for x in r.table.rows if x.name.startswith('layer')][0]\n"
            "print(json.dumps({'zipped': row.zipped, 'unzipped': row.unzipped}))\n")
    import subprocess

    tree = base_tree()
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"base layer build failed: {result.stderr.strip()[-1500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", choices=["x86_64", "arm64"], help="default: both")
    parser.add_argument("--runs", type=int, default=3, help="sandbox runs per artifact (median reported)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--compile", action="store_true", help="precompile bytecode with python3.12")
    parser.add_argument("--no-base", action="store_true", help="skip the base release's layer")
    args = parser.parse_args()
    print(f"machine: {load_line()} (shared with other sessions)")
    report: dict = {"sizes": {}, "cold_start": {}, "base": {}}
    for arch in args.arch or ["x86_64", "arm64"]:
        opts = BuildOptions(out_dir=args.out / f"py3.12-{arch}", python_version="3.12", arch=arch, source="index",
                            compile_bytecode=args.compile)
        try:
            result = build(opts)
        except BudgetError as exc:
            print(f"python3.12 {arch}: {exc}")
            continue
        print(f"\n== python3.12 {arch} (package index) ==")
        print(result.table.render())
        print("slimming removed: " + ", ".join(f"{k} {human_mb(v)}" for k, v in result.layer.slim.removed.items()))
        report["sizes"][arch] = {r.name: {"zipped": r.zipped, "unzipped": r.unzipped} for r in result.table.rows}
        if not args.no_base:
            base = base_layer(arch, args.out / f"base-py3.12-{arch}", args.compile)
            report["base"][arch] = base
            new = next(v for k, v in report["sizes"][arch].items() if k.startswith("layer"))
            print(f"layer {arch}: base {BASE_COMMIT} {human_mb(base['unzipped'])} unzipped / {human_mb(base['zipped'])} "
                  f"zipped; this tree {human_mb(new['unzipped'])} / {human_mb(new['zipped'])} (target <= 125 MB "
                  f"unzipped: {'met' if new['unzipped'] <= 125 * 1024 * 1024 else 'NOT met'})")
        py312 = find_python("3.12")
        if arch == os.uname().machine and py312:
            if not args.no_base:
                # The base's own artifacts, run by the same sandbox in the same run: the cold start side by side.
                folder = args.out / f"base-py3.12-{arch}"
                report["cold_start"][f"base {BASE_COMMIT} python3.12-{arch}"] = sandbox_runs(
                    folder / "function.zip", folder / f"layer-py3.12-{arch}.zip", py312, args.runs)
            report["cold_start"][f"python3.12-{arch}"] = sandbox_runs(result.function_zip, result.layer_zip, py312, args.runs)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    local = build(BuildOptions(out_dir=args.out / f"py{here}-local", python_version=here, arch=os.uname().machine,
                               source="installed"))
    print(f"\n== python{here} {os.uname().machine} (installed) ==")
    print(local.table.render())
    report["cold_start"][f"python{here}-installed"] = sandbox_runs(local.function_zip, local.layer_zip, sys.executable,
                                                                   args.runs)
    print("\n== cold start: import + first cycle (median), peak RSS (max) ==")
    for name, r in report["cold_start"].items():
        print(f"{name:<36} import {r['import_s']:.2f} s  first cycle {r['cycle_s']:.2f} s  peak RSS "
              f"{r['peak_rss_mb']:.0f} MB  ({r['status']}, {r['orders']} orders, {r['isolation']}, python {r['python']})")
    (args.out / "bench_layer.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
