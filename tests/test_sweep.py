"""python -m backtests.sweep: walk-forward windows, executor parity, resumption and one-line errors.

Kept small (2 stocks, 2 windows, 2 parameter sets, refits every 10 bars): 8 cells of about a second each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtests import cells, sweep
from backtests.executors import make_executor
from backtests.walkforward import choose, split_windows
from clitools import UserError
from marketdata import PriceData, load_sample, load_sample_index

SYMBOLS = ["AAPL", "KO"]
SMALL = ["--symbols", ",".join(SYMBOLS), "--set", "top_n=1", "--set", "refit_every=10", "--set", "history=60",
         "--set", "lookback=20", "--grid", "band=0.0,0.03", "--start", "2022-06-01", "--end", "2022-08-19",
         "--train", "20", "--test", "15", "--quiet"]
SPEC = sweep.SweepSpec(param_sets=[{"band": 0.0}, {"band": 0.03}],
                       fixed={"top_n": 1, "refit_every": 10, "history": 60, "lookback": 20},
                       start="2022-06-01", end="2022-08-19", train=20, test=15)


_REAL_EVALUATE = cells.evaluate_cell


class CountingEvaluate:
    """Stands in for cells.evaluate_cell in this process (``--workers 1`` runs cells inline) and counts calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, cell):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-sweep
        self.calls += 1
        return _REAL_EVALUATE(cell)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The small sweep on 2 local processes."""
    out = tmp_path_factory.mktemp("sweep") / "local"
    assert sweep.cli(SMALL + ["--executor", "local", "--workers", "2", "--out", str(out)]) == 0
    return out


def test_results_csv_has_one_row_per_parameter_set_and_window(local_run):
    table = pd.read_csv(local_run / "results.csv")
    assert len(table) == 2 * 2 and sorted(set(table["window"])) == [0, 1]
    assert table.groupby("window")["chosen"].sum().tolist() == [1, 1]
    for metric in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility", "trades", "round_trips",
                   "win_rate", "exposure", "final_equity", "benchmark_total_return", "excess_return"):
        assert f"train_{metric}" in table and f"test_{metric}" in table
    assert (pd.to_datetime(table["train_end"]) < pd.to_datetime(table["test_start"])).all()
    oos = json.loads((local_run / "oos_summary.json").read_text())
    assert [w["window"] for w in oos["windows"]] == [0, 1]
    assert oos["stitched"]["bars"] == 2 * 15
    assert oos["cells"] == {"total": 8, "computed": 8, "reused": 0}
    assert (local_run / "heatmap.png").stat().st_size > 5000
    assert (local_run / "oos_equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((local_run / "cells").glob("*.json"))) == 8


def test_dask_local_cluster_gives_identical_results(local_run, tmp_path):
    out = tmp_path / "dask"
    assert sweep.cli(SMALL + ["--executor", "dask", "--workers", "1", "--out", str(out)]) == 0
    assert (out / "results.csv").read_bytes() == (local_run / "results.csv").read_bytes()
    assert (out / "oos_equity.csv").read_bytes() == (local_run / "oos_equity.csv").read_bytes()


def test_rerun_recomputes_nothing_and_an_interrupted_sweep_resumes(local_run, tmp_path, monkeypatch):
    resumed = tmp_path / "resumed"
    shutil.copytree(local_run, resumed)
    counter = CountingEvaluate()
    monkeypatch.setattr(cells, "evaluate_cell", counter)
    assert sweep.cli(SMALL + ["--workers", "1", "--out", str(resumed)]) == 0
    assert counter.calls == 0
    assert (resumed / "results.csv").read_bytes() == (local_run / "results.csv").read_bytes()

    # a sweep interrupted after 3 cells keeps them, and the rerun computes only the other 5
    fresh = tmp_path / "fresh"
    interrupted = CountingEvaluate(fail_after=3)
    monkeypatch.setattr(cells, "evaluate_cell", interrupted)
    assert sweep.cli(SMALL + ["--workers", "1", "--out", str(fresh)]) == 130
    assert len(list((fresh / "cells").glob("*.json"))) == 3
    assert not (fresh / "results.csv").exists()
    finishing = CountingEvaluate()
    monkeypatch.setattr(cells, "evaluate_cell", finishing)
    assert sweep.cli(SMALL + ["--workers", "1", "--out", str(fresh)]) == 0
    assert finishing.calls == 5
    assert (fresh / "results.csv").read_bytes() == (local_run / "results.csv").read_bytes()
    assert json.loads((fresh / "oos_summary.json").read_text())["cells"] == {"total": 8, "computed": 5, "reused": 3}


@pytest.mark.parametrize("scheme", ["rolling", "anchored"])
def test_windows_keep_test_after_train(scheme):
    days = pd.bdate_range("2022-01-03", periods=50)
    windows = split_windows(days, train=20, test=10, scheme=scheme)
    assert len(windows) == 3
    for w in windows:
        assert w.train_end < w.test_start
        assert days.get_loc(w.test_start) == days.get_loc(w.train_end) + 1  # test starts the very next bar
        assert days.get_loc(w.test_end) - days.get_loc(w.test_start) == 9
        train_len = days.get_loc(w.train_end) - days.get_loc(w.train_start) + 1
        assert train_len == (20 if scheme == "rolling" else 20 + 10 * w.number)
        if scheme == "anchored":
            assert w.train_start == days[0]
    assert all(a.test_end < b.test_start for a, b in zip(windows, windows[1:]))  # test periods tile, no overlap


def test_choice_uses_train_results_only():
    train = [{"sharpe": 0.1, "max_drawdown": 0.2}, {"sharpe": 0.9, "max_drawdown": 0.3}]
    assert choose(train, "sharpe") == 1
    assert choose(train, "max_drawdown") == 0  # lower is better
    assert choose([{"sharpe": float("nan")}, {"sharpe": -1.0}], "sharpe") == 1


def _perturbed_after(day: pd.Timestamp) -> PriceData:
    closes = load_sample().select(SYMBOLS).closes.copy()
    later = closes.index > day
    rng = np.random.default_rng(7)
    closes.loc[later] *= rng.uniform(0.8, 1.25, size=closes.loc[later].shape)
    return PriceData.from_closes(closes, source="perturbed sample")


def test_changing_test_window_prices_leaves_every_train_choice_unchanged(local_run, tmp_path):
    original = pd.read_csv(local_run / "results.csv")
    last_train_end = pd.Timestamp(original["train_end"].max())
    data = _perturbed_after(last_train_end)  # only rows no train window contains
    with make_executor("local", workers=1) as executor:
        outcome = sweep.run_sweep(SPEC, data, load_sample_index(), executor, tmp_path / "perturbed")
    assert outcome.computed == 8  # a fresh folder: every cell really ran on the perturbed prices
    changed = pd.read_csv(tmp_path / "perturbed" / "results.csv")
    train_columns = [c for c in original if c.startswith("train_")] + ["chosen"]
    pd.testing.assert_frame_equal(changed[train_columns], original[train_columns])
    last = original["window"] == original["window"].max()
    assert not np.allclose(changed.loc[last, "test_total_return"], original.loc[last, "test_total_return"])

    # the cell keys pin the rows each cell reads: into the old folder, only the last window's test cells rerun
    reused = tmp_path / "reused"
    shutil.copytree(local_run, reused)
    with make_executor("local", workers=1) as executor:
        outcome = sweep.run_sweep(SPEC, data, load_sample_index(), executor, reused)
    assert (outcome.computed, outcome.reused) == (2, 6)


def test_cell_key_pins_parameters_rows_and_code(monkeypatch):
    from backtests.backtest import BacktestConfig
    from strategies import StrategyParams

    data, params = load_sample().select(SYMBOLS), StrategyParams(top_n=1, history=60, refit_every=10)
    config = BacktestConfig(start="2022-06-01", end="2022-06-30")
    key = cells.make_cell(data, None, params, config).key
    assert cells.make_cell(data, None, params, config).key == key
    assert cells.make_cell(data, None, params.with_(band=0.02), config).key != key
    assert cells.make_cell(data, None, params, BacktestConfig(start="2022-06-01", end="2022-07-01")).key != key
    later = _perturbed_after(pd.Timestamp("2022-06-30"))  # rows after the period do not matter
    assert cells.make_cell(PriceData(later.closes, None, {}), None, params, config).key == key
    monkeypatch.setattr(cells, "code_fingerprint", lambda: "edited strategy code")
    assert cells.make_cell(data, None, params, config).key != key


@pytest.mark.parametrize("args, message", [
    (["--grid", "bnd=0.1"], "unknown parameter 'bnd'"),
    (["--grid", "band="], "the grid for band has no values"),
    ([], "the grid is empty"),
    (["--grid", "band=0.1", "--train", "5000"], "do not fit"),
    (["--grid", "band=0.1", "--start", "1990-01-05", "--end", "1990-06-01", "--train", "20", "--test", "20"],
     "needs 256 bars of warm-up"),
    (["--grid", "band=0.1", "--heatmap", "history,band"], "--heatmap history is not swept"),
    (["--grid", "band=0.1", "--executor", "local", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        sweep.cli(["--symbols", "AAPL", "--out", str(out), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_grid_file_and_set_values_are_typed(tmp_path):
    from backtests.grid import expand, load_grid_file

    path = tmp_path / "grid.toml"
    path.write_text('[grid]\nband = [0.0, 0.02]\nmax_weight = ["none", 0.05]\n[set]\ntop_n = 3\n')
    grids, fixed = load_grid_file(path)
    assert expand(grids)[1] == {"band": 0.0, "max_weight": 0.05} and fixed == {"top_n": 3}
    bad = tmp_path / "grid.yaml"
    bad.write_text("grid:\n  history: [60, sixty]\n")
    with pytest.raises(UserError, match="parameter history must be a whole number, got 'sixty'"):
        load_grid_file(bad)


def test_heatmap_marks_the_cells_windows_chose(local_run):
    from backtests.sweep_report import chosen_grid

    table = pd.read_csv(local_run / "results.csv")
    grid = chosen_grid(table, "band", None)
    picked = table[table["chosen"]]
    assert int(grid.to_numpy().sum()) == table["window"].nunique()
    for band, n in picked["band"].value_counts().items():
        assert grid.at["", str(band)] == n
    assert (grid.to_numpy() == 0).sum() == len(set(table["band"]) - set(picked["band"]))


def test_heatmap_draws_the_outlines(tmp_path, monkeypatch):
    from backtests import sweep_report

    drawn = []
    real = sweep_report.Rectangle
    monkeypatch.setattr(sweep_report, "Rectangle", lambda xy, *a, **k: drawn.append(xy) or real(xy, *a, **k))
    table = pd.DataFrame({"window": [0, 0, 1, 1, 2, 2], "band": [0.0, 0.02] * 3,
                          "train_sharpe": [1.0, 2.0, 3.0, 0.0, 1.0, 0.5], "test_sharpe": [0.5, 0.1, 0.3, 0.2, 0.0, 0.1],
                          "chosen": [False, True, True, False, True, False]})
    sweep_report.write_heatmap(table, "band", None, "sharpe", tmp_path / "h.png")
    assert sorted(drawn) == [(-0.44, -0.44), (-0.44, -0.44), (0.56, -0.44), (0.56, -0.44)]  # both cells, both panels, inset


def test_verdict_leads_with_the_stitched_result(local_run, capsys, tmp_path):
    shutil.copytree(local_run, tmp_path / "again")
    assert sweep.cli([a for a in SMALL if a != "--quiet"] + ["--workers", "1", "--out", str(tmp_path / "again")]) == 0
    text = capsys.readouterr().out
    oos = json.loads((local_run / "oos_summary.json").read_text())
    s = oos["stitched"]
    lines = [line for line in text.splitlines() if line and not line.startswith("8 cells") and "cells," not in line]
    first = lines.index(next(line for line in lines if line.startswith("Out of sample, stitched")))
    assert f"return {s['total_return']:+.2%}, Sharpe {s['sharpe']:.2f}, max drawdown {s['max_drawdown']:.2%}" \
        in lines[first + 1]
    per_window = next(i for i, line in enumerate(lines) if line.startswith("Per window"))
    assert first < per_window
    means = [line for line in lines if "mean" in line]
    assert means and all("per-window means" in line and "not the stitched result" in line for line in means)
    expected = np.mean([w["test"]["sharpe"] for w in oos["windows"]])
    assert f"test sharpe {expected:.3f}" in means[0]


def test_any_strategy_is_swept_by_its_own_parameters_from_flags_or_a_config(tmp_path):
    args = ["--symbols", "AAPL,KO,PG,XOM", "--start", "2021-06-01", "--end", "2022-06-30", "--train", "126",
            "--test", "63", "--workers", "1", "--quiet"]
    assert sweep.cli(args + ["--strategy", "ma-crossover", "--grid", "fast=5,10", "--param", "slow=30",
                             "--max-positions", "2", "--out", str(tmp_path / "flags")]) == 0
    table = pd.read_csv(tmp_path / "flags" / "results.csv")
    assert set(table["fast"]) == {5, 10} and len(table) == 2 * table["window"].nunique()
    summary = json.loads((tmp_path / "flags" / "oos_summary.json").read_text())
    assert summary["cells"]["computed"] == 2 * 2 * table["window"].nunique()
    # the same strategy named by a config file (a run's config.toml) sweeps the same cells: nothing recomputed
    config = tmp_path / "config.toml"
    config.write_text('strategy = "ma-crossover"\n[params]\nslow = 30\n[rules]\nmax_positions = 2\n')
    shutil.copytree(tmp_path / "flags", tmp_path / "again")
    assert sweep.cli(args + ["--config", str(config), "--grid", "fast=5,10", "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "oos_summary.json").read_text())["cells"]["computed"] == 0
    with pytest.raises(SystemExit) as exit_info:
        sweep.cli(args + ["--strategy", "ma-crossover", "--grid", "top_n=1,2", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2


def test_each_heatmap_cell_is_its_own_stitched_out_of_sample_result(local_run, tmp_path, monkeypatch):
    """A cell's test colour is its parameter set traded through every test window, stitched (compounded), not the
    mean of per-window Sharpes: recomputed here from the cells' own equity curves."""
    from matplotlib.axes import Axes
    from backtests import sweep_report

    data = load_sample().select(SYMBOLS)
    windows, planned = sweep.plan(SPEC, data, load_sample_index())
    store = cells.CellStore(local_run / "cells")
    oos = json.loads((local_run / "oos_summary.json").read_text())
    assert [s["band"] for s in oos["per_set"]] == [0.0, 0.03]
    by_set = []
    for number, row in enumerate(oos["per_set"]):
        # each window starts afresh on its first test bar: the step into it is a day without a return (0)
        pieces = [cells.equity_frame(store.get(planned[(w.number, number, "test")].key))["equity"].pct_change()
                  for w in windows]
        returns = pd.concat([pieces[0].dropna()] + [p.fillna(0.0) for p in pieces[1:]])
        stitched = 100_000.0 * (1 + returns).cumprod()
        assert row["oos_total_return"] == pytest.approx(stitched.iloc[-1] / 100_000.0 - 1, rel=1e-9)
        sharpe = returns.mean() / returns.std() * np.sqrt(252)
        assert row["oos_sharpe"] == pytest.approx(sharpe, rel=1e-6)
        by_set.append(returns.reset_index(drop=True))
        means = pd.read_csv(local_run / "results.csv").groupby("band")["test_sharpe"].mean()
        assert row["oos_sharpe"] != pytest.approx(means[row["band"]], rel=1e-3)  # not the old per-window mean
    from backtests.overfitting import pbo_cscv

    assert oos["pbo"] == pbo_cscv(pd.concat(by_set, axis=1, ignore_index=True), blocks=8)
    assert oos["pbo"]["splits"] == 70 and oos["pbo"]["trials"] == 2
    written = []
    real = Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: written.append(s) or real(self, x, y, s, *a, **k))
    sweep_report.write_heatmap(pd.read_csv(local_run / "results.csv"), "band", None, "sharpe", tmp_path / "h.png",
                               pd.DataFrame(oos["per_set"]))
    for row in oos["per_set"]:
        assert any(t.startswith(f"{row['oos_sharpe']:.2f} ({row['oos_total_return']:+.1%})") for t in written)


def test_the_verdict_reports_the_deflated_sharpe_ratio(local_run):
    from backtests import sweep_report

    oos = json.loads((local_run / "oos_summary.json").read_text())
    d = oos["deflated_sharpe"]
    curve = pd.read_csv(local_run / "oos_equity.csv", index_col="date")["equity"]
    wf = d["walk_forward"]
    r = curve.pct_change().dropna()
    assert wf["trials"] == 2 and wf["observations"] == len(r)
    assert wf["sharpe_per_day"] == pytest.approx(r.mean() / r.std(), rel=1e-4)
    assert 0.0 <= wf["deflated_sharpe"] <= wf["probabilistic_sharpe"] <= 1.0  # deflating never raises it
    text = sweep_report.format_oos(oos)
    assert f"deflated Sharpe ratio (Bailey and Lopez de Prado, 2 parameter sets): {wf['deflated_sharpe']:.2f}" in text
    assert text.index("deflated Sharpe") < text.index("Per window")  # the stitched result and its deflation lead
    assert f"probability of backtest overfitting (CSCV, 8 blocks of the out-of-sample days, 70 splits, 2 sets): " \
           f"{oos['pbo']['pbo']:.2f}" in text
