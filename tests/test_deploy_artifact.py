"""The built zips, unpacked into an empty folder, run a paper-broker replay cycle that trades, like Lambda would:
``python -I -S`` with only the function and the layer on ``sys.path``, read-only home and working directory,
TMPDIR the only writable place, network off.

The non-network test builds the layer from this machine's site-packages (its Python, its arch). The network
test builds the real python3.12 layer from the package index and runs it with a python3.12 interpreter.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.build import BuildOptions, build
from deploy.layer import find_python
from deploy.sandbox import cleanup, run_handler

EVENT = {"now": "2022-06-01T15:45:00-04:00"}
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCH = "arm64" if os.uname().machine == "aarch64" else "x86_64"
ROOT = Path(__file__).resolve().parent.parent


def _listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    return server, server.getsockname()[1]


def _run_and_check(result_build, tmp_path: Path, python: str):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert not any(sandbox.iterdir())
    server, port = _listening_port()
    try:
        run = run_handler(result_build.function_zip, result_build.layer_zip, sandbox, EVENT, python=python,
                          env={"SANDBOX_PROBE_PORT": str(port)})
    finally:
        server.close()
    try:
        assert run.returncode == 0, run.stderr
        summary = run.summary
        assert summary["status"] == "traded" and summary["error"] is None and summary["broker"] == "paper"
        assert summary["orders"] and all(o["status"] == "filled" and o["qty"] > 0 for o in summary["orders"])
        assert {o["side"] for o in summary["orders"]} == {"buy"}  # a fresh paper account can only buy
        # Everything came from the unpacked zips; nothing research-only was importable or imported.
        assert run.outside_modules == []
        assert not {"matplotlib", "backtrader", "deploy", "backtests", "pytest", "moto", "dask"} & set(run.modules)
        # the default exact engine solves Prophet's model itself: Prophet (and Stan) load only for engine=stan
        assert {"pandas", "live", "strategies", "brokers"} <= set(run.modules)
        # Only TMPDIR was written: the paper broker's database and the journal.
        assert {Path(f).name for f in run.tmp_files} >= {"paper.sqlite", "journal.jsonl"}
        assert os.stat(sandbox / "opt/python/prophet/stan_model/prophet_model.bin").st_mode & stat.S_IXUSR
        if run.isolation == "namespaces":
            assert run.network.startswith("off"), run.network
        return run
    finally:
        cleanup(sandbox)


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("lambda-build")
    return build(BuildOptions(out_dir=out, python_version=HERE, arch=ARCH, source="installed", zip_level=1))


def test_installed_artifacts_run_a_trading_cycle_offline(local_build, tmp_path):
    names = zipfile.ZipFile(local_build.layer_zip).namelist()
    assert all(n.startswith("python/") for n in names)
    tops = {n.split("/")[1] for n in names}
    assert not {"matplotlib", "backtrader", "dask", "pytest", "moto", "boto3", "botocore"} & tops
    run = _run_and_check(local_build, tmp_path, sys.executable)
    # Cold start figures (import + first cycle) for the record; speed is judged by benchmarks/, not here.
    record = {"python": run.python, "isolation": run.isolation, "import_s": round(run.import_s, 2),
              "cycle_s": round(run.cycle_s, 2), "peak_rss_mb": round(max(run.peak_rss_mb, run.child_peak_rss_mb))}
    print("artifact cold start:", json.dumps(record))
    assert run.import_s > 0 and run.cycle_s > 0 and run.peak_rss_mb > 50


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("PROPHETTREND_NETWORK_TESTS") != "1", reason="needs the package index")
def test_index_layer_for_python312_runs_offline(tmp_path, monkeypatch):
    python312 = find_python("3.12")
    if python312 is None or os.uname().machine != "x86_64":
        pytest.skip("needs a python3.12 interpreter on x86_64")
    monkeypatch.setenv("PIP_CACHE_DIR", str(ROOT / ".cache" / "pip"))
    result = build(BuildOptions(out_dir=tmp_path / "out", python_version="3.12", arch="x86_64", source="index"))
    assert result.table.total_unzipped < 250 * 1024 * 1024
    run = _run_and_check(result, tmp_path, python312)
    assert run.python.startswith("3.12")


def test_a_users_strategy_file_packed_by_deploy_runs_in_the_sandbox(local_build, tmp_path):
    """A strategy in a folder outside the package, packed by `deploy build --strategy FILE:Class`, trades in the
    unpacked function zip under the same sandbox, with the schedule and config the bundle derived."""
    from deploy.function_zip import build_function_zip
    from deploy.strategy_bundle import CONFIG_NAME, strategy_bundle

    user = tmp_path / "elsewhere" / "top_two.py"
    user.parent.mkdir()
    user.write_text(
        "from dataclasses import dataclass\nfrom strategies import Strategy\n\n"
        "@dataclass(frozen=True)\nclass Params:\n    names: int = 2\n\n"
        "class TopTwo(Strategy):\n    name = 'top-two'\n    warmup_bars = 6\n    Params = Params\n\n"
        "    def decide(self, closes, positions, cash):\n"
        "        ret = (closes.iloc[-1] / closes.iloc[-6] - 1).dropna().sort_values(ascending=False)\n"
        "        return {s: 0.9 / self.params.names for s in ret.index[: self.params.names]}\n")
    bundle = strategy_bundle(None, f"{user}:TopTwo", ["names=3"], None)
    assert bundle.deployed_strategy == "user_strategies.top_two:TopTwo"
    function_zip, _ = build_function_zip(tmp_path / "function.zip", extra=bundle.files)
    names = zipfile.ZipFile(function_zip).namelist()
    assert {CONFIG_NAME, "user_strategies/top_two.py", "user_strategies/__init__.py"} <= set(names)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    try:
        run = run_handler(function_zip, local_build.layer_zip, sandbox, EVENT, python=sys.executable,
                          env={"STRATEGY_CONFIG": CONFIG_NAME})
        assert run.returncode == 0, run.stderr
        summary = run.summary
        assert summary["status"] == "traded" and summary["strategy"] == "top-two", summary["error"]
        assert len(summary["orders"]) == 3 and all(o["client_order_id"].startswith("top-two-20220601-")
                                                   for o in summary["orders"])
        assert run.outside_modules == []
    finally:
        cleanup(sandbox)


def test_the_shipped_artifacts_read_the_bundled_session_table(local_build, tmp_path):
    """Unpacked alone (no site-packages), the function zip's session file is used with the layer's
    exchange_calendars, so a cold cycle in Lambda does not build the NYSE calendar (marketdata/sessions.py)."""
    import subprocess

    for archive, into in ((local_build.function_zip, tmp_path / "fn"), (local_build.layer_zip, tmp_path / "layer")):
        zipfile.ZipFile(archive).extractall(into)
    code = ("import sys, datetime as dt\nfrom brokers.calendar import MarketCalendar\ncal = MarketCalendar()\n"
            "print(cal._table.source, cal.session(dt.date(2022, 11, 25)).close.isoformat(),"
            " 'exchange_calendars' in sys.modules)")
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path / "fn", capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"],
                               "PYTHONPATH": f"{tmp_path / 'fn'}{os.pathsep}{tmp_path / 'layer' / 'python'}"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    from importlib.metadata import version

    assert done.stdout.split() == ["xnys_sessions.npz", "(exchange_calendars", f"{version('exchange_calendars')})",
                                   "2022-11-25T13:00:00-05:00", "False"]
