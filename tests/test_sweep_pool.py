"""The sweep fits each cell's exact Prophet models on the engine pool (``--fit-workers``): the same results inline,
on local processes and on Dask (whose daemonic workers fit in-process: the pool's numbers are the same)."""

from __future__ import annotations

import pytest

from backtests import cells, sweep
from strategies.engines.pool import ExactPool

SMALL = ["--symbols", "AAPL,KO,MSFT", "--set", "top_n=2", "--set", "refit_every=10", "--set", "history=60",
         "--set", "lookback=20", "--grid", "band=0.0,0.02", "--start", "2022-06-01", "--end", "2022-07-29",
         "--train", "20", "--test", "10", "--quiet"]


class CountingPool(ExactPool):
    """The real pool, counting the worker processes it started (so the test sees the pool was used)."""

    started: list[int] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        CountingPool.started.append(len(self._procs))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-plain")
    assert sweep.cli(SMALL + ["--workers", "1", "--out", str(out)]) == 0
    return out


def test_fit_workers_use_the_pool_and_change_no_result(plain, tmp_path, monkeypatch):
    monkeypatch.setattr(cells, "ExactPool", CountingPool)
    CountingPool.started.clear()
    out = tmp_path / "pooled"
    assert sweep.cli(SMALL + ["--workers", "1", "--fit-workers", "2", "--out", str(out)]) == 0
    assert CountingPool.started and set(CountingPool.started) == {1}  # every cell: one process beside the caller
    for name in ("results.csv", "oos_equity.csv"):
        assert (out / name).read_bytes() == (plain / name).read_bytes()


def test_fit_workers_on_dask_give_identical_results(plain, tmp_path):
    out = tmp_path / "dask"
    assert sweep.cli(SMALL + ["--executor", "dask", "--workers", "1", "--fit-workers", "2", "--out", str(out)]) == 0
    for name in ("results.csv", "oos_equity.csv"):
        assert (out / name).read_bytes() == (plain / name).read_bytes()


def test_fit_workers_below_one_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.cli(SMALL + ["--fit-workers", "0", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --fit-workers must be at least 1, got 0"
