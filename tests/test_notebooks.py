"""The notebooks run top to bottom on the bundled sample (short window) and draw their figures."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # nbclient raises CellExecutionError on the first failing cell, so reaching the end means no cell errored
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs(nb, output_type=None):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if output_type is None or o.output_type == output_type]


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _text(nb) -> str:
    parts = []
    for o in _outputs(nb):
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", ["01_one_stock.ipynb", "02_backtest.ipynb", "03_live_report.ipynb"])
def test_committed_without_outputs_and_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert _outputs(nb) == []
    assert all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "PROPHETTREND_NB_FAST" in tagged[0].source


def test_one_stock_notebook_runs_and_draws(monkeypatch):
    monkeypatch.setenv("PROPHETTREND_NB_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebook must still show its figures inline
    nb = _execute("01_one_stock.ipynb")
    assert _outputs(nb, "error") == []
    assert _images(nb) >= 5  # history, Prophet fit, trades, one panel set per band, history comparison
    text = _text(nb)
    assert "forecast 5 business days ahead" in text
    assert "band" in text and "history" in text  # the comparison tables were displayed


def test_backtest_notebook_runs_and_draws(monkeypatch):
    monkeypatch.setenv("PROPHETTREND_NB_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _execute("02_backtest.ipynb")
    assert _outputs(nb, "error") == []
    assert _images(nb) >= 4  # equity and drawdown, monthly returns, trades per symbol, one symbol up close
    text = _text(nb)
    assert "prophet-trend backtest 2022-10-03 to 2022-12-28" in text and "SP500" in text
    assert "4 symbols" in text


def test_live_report_notebook_reads_the_sample_journal_and_draws(monkeypatch):
    monkeypatch.setenv("PROPHETTREND_NB_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _execute("03_live_report.ipynb")
    assert _outputs(nb, "error") == []
    assert _images(nb) >= 3  # statuses, equity against benchmark and backtest, positions
    text = _text(nb)
    assert "statuses    market_closed 1, no_change 16, traded 5" in text and "JNJ sell refused" in text
    assert "refused by the broker" in text and "JNJ" in text
