"""python -m backtests.run end to end on a short window of the sample, and its metrics recomputed independently."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtests.run import cli
from tests._backtest_fixtures import SHORT_ARGS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "short"
    assert cli(SHORT_ARGS + ["--out", str(out)]) == 0
    return out


def test_writes_all_outputs(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.toml", "equity.csv", "positions.csv", "report.html",
                                                          "report.png", "round_trips.csv", "skipped.csv",
                                                          "summary.json", "trades.csv"]
    s = json.loads((run_dir / "summary.json").read_text())
    for key in ("start", "end", "symbols", "params", "total_return", "cagr", "sharpe", "sortino", "max_drawdown",
                "volatility", "trades", "win_rate", "exposure", "benchmark", "data"):
        assert key in s
    assert set(s["benchmark"]) >= {"total_return", "cagr", "sharpe", "max_drawdown"}
    assert s["symbols"] == ["AAPL", "MSFT", "KO", "XOM", "JPM"]
    assert s["params"]["history"] == 60 and s["params"]["top_n"] == 3
    assert s["data"]["content_hash"].startswith("sha256:") and s["data"]["adjusted"] is True
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_equity_has_one_row_per_bar_from_start(run_dir):
    eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"])
    assert list(eq.columns[:3]) == ["date", "equity", "benchmark"]
    assert eq["date"].iloc[0] == pd.Timestamp("2022-09-01") and eq["date"].iloc[-1] == pd.Timestamp("2022-12-28")
    assert eq["date"].is_unique and eq["date"].is_monotonic_increasing
    assert eq["benchmark"].iloc[0] == pytest.approx(100_000)
    # the first row is the book at the first close after that day's fills: the cash less their slippage and fees
    trades = pd.read_csv(run_dir / "trades.csv", parse_dates=["date"])
    from marketdata import load_sample

    first = trades[trades["date"] == eq["date"].iloc[0]]
    closes = load_sample().closes.loc[eq["date"].iloc[0]]
    cost = sum(abs(t.value - t.qty * closes[t.symbol]) + t.commission for t in first.itertuples())
    assert len(first) and eq["equity"].iloc[0] == pytest.approx(100_000 - cost, abs=0.02)


def test_trades_fill_at_the_decision_bars_close_with_alpacas_costs(run_dir):
    from strategies.execution import Costs

    trades = pd.read_csv(run_dir / "trades.csv", parse_dates=["date", "decision_date"])
    assert list(trades.columns[:7]) == ["date", "symbol", "side", "qty", "price", "value", "commission"]
    assert len(trades) > 0
    assert (trades["date"] == trades["decision_date"]).all()  # the default model: at the decision moment
    assert (trades["decision_date"] >= pd.Timestamp("2022-09-01")).all()
    assert (trades["qty"] > 0).all() and set(trades["side"]) <= {"buy", "sell"}
    # trades.csv holds money in cents and prices in four decimals (slipped prices have more)
    assert ((trades["value"] - trades["qty"] * trades["price"]).abs() <= 0.005 + trades["qty"] * 5e-5 + 1e-9).all()
    # Alpaca: no commission; the SEC fee and FINRA TAF on sells only
    costs = Costs()
    fees = [costs.fees(t.side, t.qty, t.price, t.date.date()) for t in trades.itertuples()]
    assert np.allclose(trades["commission"], fees, rtol=0, atol=0.005 + 1e-9)
    assert (trades.loc[trades["side"] == "buy", "commission"] == 0).all()
    assert (trades.loc[trades["side"] == "sell", "commission"] > 0).all()
    # closes-only data: a fill happens at the decision bar's close, moved by 2 bps of slippage
    from marketdata import load_sample

    closes = load_sample().closes
    for t in trades.itertuples():
        assert t.price == pytest.approx(costs.fill_price(t.side, closes.at[t.date, t.symbol]), abs=5e-5)


def _metrics(values):
    r = values[1:] / values[:-1] - 1
    years = len(r) / 252
    sd = r.std(ddof=1)
    down = math.sqrt((np.minimum(r, 0) ** 2).mean())
    return {
        "total_return": values[-1] / values[0] - 1,
        "cagr": (values[-1] / values[0]) ** (1 / years) - 1,
        "sharpe": r.mean() / sd * math.sqrt(252),
        "sortino": r.mean() / down * math.sqrt(252),
        "max_drawdown": max(1 - v / p for v, p in zip(values, np.maximum.accumulate(values))),
        "volatility": sd * math.sqrt(252),
    }


def test_summary_metrics_match_equity_csv(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())
    eq = pd.read_csv(run_dir / "equity.csv")
    # fills at the decision bar's close: the first row holds the first day's fills, the return runs from the cash
    start = [s["config"]["cash"]] if s["execution"]["fill"] == "decision" else []
    mine = _metrics(np.array(start + eq["equity"].tolist()))
    # equity.csv is in cents and summary.json comes from the unrounded curve: 1e-6 is that rounding
    for key, value in mine.items():
        assert s[key] == pytest.approx(value, rel=1e-6, abs=1e-5), key  # cents of rounding in the csv
    bench = _metrics(eq["benchmark"].to_numpy())
    for key in ("total_return", "cagr", "sharpe", "max_drawdown"):
        assert s["benchmark"][key] == pytest.approx(bench[key], rel=1e-6), key
    assert s["max_drawdown"] > 0
    # exposure: the mean invested share of equity; bars_with_position: the share of bars holding anything
    assert s["exposure"] == pytest.approx(((eq["equity"] - eq["cash"]) / eq["equity"]).mean(), abs=1e-6)
    assert s["bars_with_position"] == pytest.approx(((eq["equity"] - eq["cash"]) > 1e-9).mean())
    trades = pd.read_csv(run_dir / "trades.csv")
    assert s["trades"] == len(trades)


def test_benchmark_is_the_sp500_index(run_dir):
    from marketdata import load_sample_index

    eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"]).set_index("date")
    index = load_sample_index().loc[eq.index]
    assert np.allclose(eq["benchmark"], 100_000 * index / index.iloc[0])


def test_existing_run_is_never_overwritten(run_dir, capsys):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(SystemExit) as exc:
        cli(SHORT_ARGS + ["--out", str(run_dir), "--top-n", "1"])
    assert exc.value.code == 2
    assert "already holds files" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_help_lists_every_strategy_flag():
    out = subprocess.run([sys.executable, "-m", "backtests.run", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--data", "--symbols", "--start", "--end", "--cash", "--commission", "--top-n", "--lookback",
                 "--history", "--horizon", "--band", "--mode", "--refit-every", "--stop-loss", "--take-profit",
                 "--benchmark", "--out", "--no-plot", "--quiet", "--engine"):
        assert flag in out.stdout
