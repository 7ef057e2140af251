"""The zips: reproducible bytes, exec bits, what the function zip holds, slimming rules, the size budget."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.build import BuildOptions, build
from deploy.function_zip import build_function_zip, function_manifest
from deploy.layer import (BudgetError, LayerTarget, SizeRow, SizeTable, SlimReport, check_layer,
                          drop_unneeded_distributions, slim)
from deploy.zipfiles import extract_zip, write_zip

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"strategies", "marketdata", "brokers", "live", "clitools"}


def _tree(root: Path, files: dict[str, str | bytes], executable: tuple[str, ...] = ()) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for rel in executable:
        (root / rel).chmod(0o755)
    return root


def test_zip_is_byte_identical_and_keeps_exec_bits(tmp_path):
    src = _tree(tmp_path / "src", {"python/b.py": "b = 1\n", "python/a/model.bin": b"\x7fELF...",
                                   "python/a/__init__.py": ""}, executable=("python/a/model.bin",))
    first = write_zip(src, tmp_path / "one.zip")
    # Different mtimes and umask-ish modes must not change the bytes.
    os.utime(src / "python/b.py", (1_000_000_000, 1_000_000_000))
    (src / "python/a/__init__.py").chmod(0o600)
    second = write_zip(src, tmp_path / "two.zip")
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert names == sorted(names) == ["python/a/__init__.py", "python/a/model.bin", "python/b.py"]
    out = extract_zip(first, tmp_path / "out")
    assert os.stat(out / "python/a/model.bin").st_mode & stat.S_IXUSR
    assert not os.stat(out / "python/b.py").st_mode & stat.S_IXUSR
    assert not (tmp_path / "one.zip.partial").exists()


def test_function_zip_holds_only_the_entry_and_the_packages_it_imports(tmp_path):
    one, manifest = build_function_zip(tmp_path / "f1.zip")
    two, _ = build_function_zip(tmp_path / "f2.zip")
    assert one.read_bytes() == two.read_bytes()
    names = zipfile.ZipFile(one).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == SHIPPED | {"lambda_function.py"}
    assert not any("backtrader" in n for n in names)
    # the live report and its drift check re-run the backtest: research-only, they stay out of the zip
    assert manifest.excluded == {"live/drift.py": "imports backtrader", "live/report.py": "imports matplotlib"}
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # Engines loaded by name and package data ship because packages ship whole.
    assert "strategies/engines/stan.py" in names and "marketdata/data/sp500_dataset.csv.gz" in names
    assert "marketdata/data/xnys_sessions.npz" in names  # the session table a cold cycle reads instead of building
    assert {"prophet", "pandas", "alpaca"} <= manifest.third_party
    assert not {"backtrader", "matplotlib", "deploy", "backtests"} & manifest.third_party


def test_manifest_follows_relative_imports_and_refuses_never_shipped_packages(tmp_path):
    root = _tree(tmp_path, {"lambda_function.py": "from app import run\n", "app/__init__.py": "from .core import run\n",
                            "app/core.py": "import json\nimport requests\ndef run():\n    import yaml\n",
                            "app/plot.py": "import matplotlib\n", "unused/__init__.py": "import scipy\n"})
    m = function_manifest(root)
    assert m.files == ["lambda_function.py", "app/__init__.py", "app/core.py"]
    assert m.third_party == {"requests", "yaml"} and m.excluded == {"app/plot.py": "imports matplotlib"}
    (root / "app" / "core.py").write_text("from backtests import run\n")
    (root / "backtests").mkdir()
    (root / "backtests" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="never ships"):
        function_manifest(root)


def _dist(root: Path, name: str, requires: list[str], files: dict[str, str]) -> None:
    info = f"{name}-1.0.dist-info"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n{}".format(
        name, "".join(f"Requires-Dist: {r}\n" for r in requires))
    all_files = {**files, f"{info}/METADATA": meta}
    record = "".join(f"{rel},,\n" for rel in [*all_files, f"{info}/RECORD"])
    _tree(root, {**all_files, f"{info}/RECORD": record})


def test_drop_unneeded_distributions_removes_matplotlib_and_its_orphans(tmp_path):
    _dist(tmp_path, "prophet", ["matplotlib", "holidays", "pytest; extra == 'test'"], {"prophet/__init__.py": ""})
    _dist(tmp_path, "holidays", [], {"holidays/__init__.py": ""})
    _dist(tmp_path, "matplotlib", ["cycler", "holidays"], {"matplotlib/__init__.py": "", "mpl_toolkits/x.py": ""})
    _dist(tmp_path, "cycler", [], {"cycler.py": ""})
    _dist(tmp_path, "boto3", [], {"boto3/__init__.py": ""})
    report = SlimReport()
    dropped = drop_unneeded_distributions(tmp_path, ["prophet"], LayerTarget(), report)
    assert dropped == ["boto3", "cycler", "matplotlib"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["holidays", "holidays-1.0.dist-info", "prophet", "prophet-1.0.dist-info"]
    assert report.removed["unneeded distributions"] > 0


def test_slim_rules(tmp_path):
    # a real extension module to strip: numpy's is there in every environment (a venv has no lib-dynload of its own)
    import numpy._core._multiarray_umath as umath

    ext = Path(umath.__file__)
    layer = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/tests/test_a.py": "", "pkg/mod.pyi": "", "pkg/_speed.c": "", "pkg/x.h": "",
        "holidays/locale/de/LC_MESSAGES/de.mo": "x", "holidays/locale/en_US/LC_MESSAGES/en_US.mo": "x",
        "prophet/stan_model/prophet_model.bin": b"\x7fELF", "prophet/stan_model/cmdstan-2.37.0/makefile": "",
        "prophet/stan_model/cmdstan-2.37.0/bin/stanc": "", "prophet/stan_model/cmdstan-2.37.0/stan/x.o": "",
        "pyarrow/libarrow.so.2600": "", "pyarrow/libarrow_flight.so.2600": "", "pyarrow/_s3fs.cpython-311.so": "",
        "pyarrow/libarrow_python.so.2600": "", "pyarrow/libarrow_python.so": "", "pyarrow/libarrow_python.so.2600.1.0": "",
        "bin/some-script": "",
    }, executable=("prophet/stan_model/prophet_model.bin",))
    shutil.copy(ext, layer / "pkg" / ext.name)
    (layer / "numpy.libs").mkdir()
    shutil.copy(ext, layer / "numpy.libs" / "libvendored.so.1")
    report = slim(layer, LayerTarget(f"{sys.version_info.major}.{sys.version_info.minor}", os.uname().machine))
    left = sorted(p.relative_to(layer).as_posix() for p in layer.rglob("*") if p.is_file())
    assert left == sorted([
        "pkg/__init__.py", f"pkg/{ext.name}", "numpy.libs/libvendored.so.1",
        "holidays/locale/en_US/LC_MESSAGES/en_US.mo", "prophet/stan_model/prophet_model.bin",
        "prophet/stan_model/cmdstan-2.37.0/makefile", "pyarrow/libarrow.so.2600", "pyarrow/libarrow_python.so.2600"])
    assert os.stat(layer / "prophet/stan_model/prophet_model.bin").st_mode & stat.S_IXUSR
    # Extension modules are stripped, auditwheel's vendored libraries never.
    assert (layer / "numpy.libs" / "libvendored.so.1").read_bytes() == ext.read_bytes()
    if shutil.which("strip"):
        assert report.stripped == 1 and (layer / "pkg" / ext.name).stat().st_size < ext.stat().st_size
    check_layer(layer)  # passes: nothing forbidden, model binary executable


def test_check_layer_refuses_research_packages_and_lost_exec_bit(tmp_path):
    _tree(tmp_path, {"matplotlib/__init__.py": ""})
    with pytest.raises(BudgetError, match="must not ship matplotlib"):
        check_layer(tmp_path)
    shutil.rmtree(tmp_path / "matplotlib")
    _tree(tmp_path, {"prophet/stan_model/prophet_model.bin": b"\x7fELF"})
    (tmp_path / "prophet/stan_model/prophet_model.bin").chmod(0o644)
    with pytest.raises(BudgetError, match="exec bit"):
        check_layer(tmp_path)


def test_size_table_and_budget_error_message():
    mb = 1024 * 1024
    table = SizeTable([SizeRow("function.zip", 1 * mb, 2 * mb), SizeRow("layer.zip", 60 * mb, 260 * mb)],
                      biggest=[("pyarrow", 120 * mb), ("pandas", 27 * mb)])
    text = table.render()
    assert "OVER BUDGET" in text and "uploaded through S3" in text
    with pytest.raises(BudgetError) as err:
        table.check()
    assert str(err.value) == ("function + layer unzip to 262.0 MB, over the 250.0 MB limit by 12.0 MB; "
                              "biggest: pyarrow 120.0 MB, pandas 27.0 MB")
    SizeTable([SizeRow("f", 1, 2)]).check()  # under budget: no error


def test_build_over_budget_fails_fast_with_one_line_and_no_layer_zip(tmp_path):
    opts = BuildOptions(out_dir=tmp_path, python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                        arch=os.uname().machine.replace("aarch64", "arm64"), source="installed", budget_mb=20, strip=False)
    with pytest.raises(BudgetError, match=r"over the 20.0 MB limit by .*; biggest: "):
        build(opts)
    assert not opts.layer_zip.exists()


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    def run(*args):
        r = subprocess.run([sys.executable, "-m", "deploy", *args], cwd=ROOT, capture_output=True, text=True)
        return r.returncode, r.stderr.strip()

    code, err = run("build", "--source", "installed", "--python-version", "3.12", "--arch", "arm64", "--out", str(tmp_path))
    assert code == 2 and err.splitlines()[-1].startswith("error: --source installed builds only for this machine")
    code, err = run("up", "--dry-run", "--memory", "64")
    assert (code, err) == (2, "error: --memory must be between 128 and 10240 MB, not 64")
    code, err = run("up", "--dry-run", "--env", "APCA_API_SECRET_KEY=x")
    assert code == 2 and err.startswith("error: --env APCA_API_SECRET_KEY: looks like a credential")
    assert "secret store" in err and "=x" not in err and len(err.splitlines()) == 1
    code, err = run("up", "--dry-run", "--env", "novalue")
    assert (code, err) == (2, "error: --env needs NAME=VALUE, got 'novalue'")
    code, err = run("up", "--function-zip", "f.zip")
    assert (code, err) == (2, "error: --function-zip and --layer-zip go together")
    code, err = run("nonsense")
    assert code == 2 and err.startswith("error: argument COMMAND: invalid choice")
    r = subprocess.run([sys.executable, "-m", "deploy", "up", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--dry-run" in r.stdout and "--endpoint-url" in r.stdout


def test_missing_aws_credentials_is_one_line_with_what_to_do(monkeypatch, tmp_path, capsys):
    from deploy.__main__ import run as deploy_cli

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SystemExit) as exc:
        deploy_cli(["status", "--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no AWS credentials found: pass --profile") and err.count("\n") == 1
