"""report.png and report.html for any strategy, through ``python -m backtests.run`` with plots on: both shipped
strategies, a user file returning weights and one returning a Decision with explicit orders (and forecasts, the
generic hook of the price-and-forecast panel). Short windows, three symbols: about a second per run but
prophet-trend's fits."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _readme_snippets import readme_strategy

SYMBOLS = "AAPL,MSFT,KO"
WINDOW = ["--symbols", SYMBOLS, "--start", "2022-10-03", "--end", "2022-12-28", "--quiet"]

WEIGHTS_FILE = readme_strategy("TopTwo")  # the README's own snippet, as a user copies it

ORDERS_FILE = '''
from strategies.base import Decision, OrderIntent, Strategy

class Alternate(Strategy):
    """Buys 10 KO on even weeks, sells 4 of them (a trim) then the rest; forecasts KO but in November."""
    name = "alternate"
    warmup_bars = 2
    def decide(self, closes, positions, cash):
        now, price = closes.index[-1], float(closes["KO"].iloc[-1])
        held = positions["KO"].qty if "KO" in positions else 0
        week = now.isocalendar()[1]
        orders = []
        if held == 0 and week % 2 == 0:
            orders = [OrderIntent("KO", "buy", 10, price, "even week")]
        elif held == 10 and week % 2 == 1:
            orders = [OrderIntent("KO", "sell", 4, price, "trim")]
        elif 0 < held < 10 and week % 2 == 0:
            orders = [OrderIntent("KO", "sell", held, price, "close")]
        forecasts = {"KO": price * 1.01} if now.month != 11 else {}
        return Decision(orders=orders, forecasts=forecasts)
'''


def _run(args: list[str], out: Path) -> Path:
    """``python -m backtests.run ARGS --out OUT`` in this process (the same ``cli``; no second interpreter to start)."""
    from backtests.run import cli

    assert cli([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("any")
    (root / "top_two.py").write_text(textwrap.dedent(WEIGHTS_FILE))
    (root / "alternate.py").write_text(textwrap.dedent(ORDERS_FILE))
    return {
        "prophet-trend": _run(WINDOW + ["--top-n", "2", "--lookback", "20", "--history", "60", "--refit-every", "20",
                                        "--engine", "exact"], root / "pt"),
        # with stops, which closes-only data checks on closes (the sample has no highs and lows)
        "ma-crossover": _run(WINDOW + ["--strategy", "ma-crossover", "--param", "fast=5", "--param", "slow=20",
                                       "--stop-loss", "0.01"], root / "ma"),
        "top-two": _run(WINDOW + ["--strategy", f"{root / 'top_two.py'}:TopTwo"], root / "tt"),
        "alternate": _run(WINDOW + ["--strategy", f"{root / 'alternate.py'}:Alternate", "--benchmark",
                                    "equal-weight"], root / "alt"),
    }


@pytest.mark.parametrize("name", ["prophet-trend", "ma-crossover", "top-two", "alternate"])
def test_every_strategy_draws_both_reports(runs, name):
    out = runs[name]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"]["name"] == name
    assert f"<title>{name} 2022-10-03 to 2022-12-28" in page.replace("&#x27;", "'")
    trades = pd.read_csv(out / "trades.csv")
    assert len(trades) > 0
    # the costs paid are in summary.json and on the page, to the cent
    assert summary["costs"]["commission"] == pytest.approx(trades["commission"].sum(), abs=0.01 * len(trades))
    assert f"{summary['costs']['commission']:,.2f}" in page


def test_the_orders_strategy_gets_its_forecast_panel_with_gaps(runs):
    from backtests.backtest import BacktestConfig, forecast_rows, run_backtest
    from backtests.report import focus_symbol, forecast_line
    from marketdata import load_sample
    from strategies.loader import build_strategy

    out = runs["alternate"]
    spec = json.loads((out / "summary.json").read_text())["strategy"]["class"]
    assert spec.endswith(":Alternate")
    strategy = build_strategy(f"{out.parent / 'alternate.py'}:Alternate", {})
    result = run_backtest(load_sample().select(SYMBOLS.split(",")), strategy,
                          BacktestConfig(start="2022-10-03", end="2022-12-28", benchmark="equal-weight"))
    assert set(result.forecasts["symbol"]) == {"KO"} and forecast_rows([]) == []
    assert focus_symbol(result) == "KO"
    line = forecast_line(result, "KO")
    # forecast in October and December only: November is NaN, so the drawn line breaks there
    assert line.index.equals(result.equity.index)
    assert line[line.index.month == 11].isna().all() and line[line.index.month != 11].notna().all()


def test_weights_strategy_panel_is_its_most_traded_symbol(runs):
    from backtests.backtest import BacktestResult
    from backtests.report import focus_symbol
    from marketdata import load_sample

    out = runs["top-two"]
    trades = pd.read_csv(out / "trades.csv", parse_dates=["date"])
    eq = pd.read_csv(out / "equity.csv", parse_dates=["date"], index_col="date")
    summary = json.loads((out / "summary.json").read_text())
    result = BacktestResult(summary, eq, trades, pd.DataFrame(columns=["date", "symbol", "forecast"]),
                            load_sample().closes[summary["symbols"]], pd.DataFrame())
    counts = trades["symbol"].value_counts()
    assert focus_symbol(result) in set(counts[counts == counts.max()].index)


def test_trims_are_counted_apart_from_round_trips(runs):
    out = runs["alternate"]
    trips = pd.read_csv(out / "round_trips.csv")
    trades = pd.read_csv(out / "trades.csv")
    summary = json.loads((out / "summary.json").read_text())
    sells = trades[trades["side"] == "sell"]
    trims, closes = sells[sells["qty"] == 4], sells[sells["qty"] != 4]
    assert len(trims) > 0 and len(closes) > 0
    assert (trips["status"] == "trim").sum() == len(trims) == summary["trims"]
    assert (trips["status"] == "closed").sum() == len(closes) == summary["round_trips"]
    closed = trips[trips["status"] == "closed"]
    assert summary["win_rate"] == pytest.approx((closed["trip_pnl"] > 0).mean())
    # a trip's P&L is its trim and its close together
    realised = trips[trips["status"] != "open"]["pnl"].sum()
    assert closed["trip_pnl"].sum() == pytest.approx(realised, abs=0.02)
    page = (out / "report.html").read_text()
    assert f"{summary['round_trips']} / {(trips['status'] == 'open').sum()}; {summary['trims']}" in page


def test_exposure_is_the_mean_invested_share_of_positions_csv(runs):
    for name in ("ma-crossover", "top-two"):
        out = runs[name]
        weights = pd.read_csv(out / "positions.csv", index_col="date")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exposure"] == pytest.approx(weights.sum(axis=1).mean(), abs=1e-5)
        assert summary["bars_with_position"] == pytest.approx((weights > 0).any(axis=1).mean())
        page = (out / "report.html").read_text()
        assert "Exposure (mean invested share)" in page and f"{summary['exposure']:.1%}" in page
        assert "Bars with a position" in page


def test_turnover_is_the_traded_value_over_mean_equity(runs):
    out = runs["ma-crossover"]
    trades = pd.read_csv(out / "trades.csv")
    eq = pd.read_csv(out / "equity.csv", index_col="date")
    summary = json.loads((out / "summary.json").read_text())
    total = trades["value"].sum() / eq["equity"].mean()
    assert summary["turnover"]["total"] == pytest.approx(total, rel=1e-4)
    assert summary["turnover"]["annual"] == pytest.approx(total / 2 / ((len(eq) - 1) / 252), rel=1e-4)
    assert f"{summary['turnover']['annual']:.1f}x" in (out / "report.html").read_text()


@pytest.fixture(scope="module")
def intraday_run(tmp_path_factory) -> Path:
    import importlib.util

    root = tmp_path_factory.mktemp("intraday")
    spec = importlib.util.spec_from_file_location("synthetic_intraday", Path(__file__).resolve().parent.parent
                                                  / "examples" / "synthetic_intraday.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(root / "bars.csv"), "--start", "2022-05-23", "--end", "2022-06-10"])
    return _run(["--data", str(root / "bars.csv"), "--strategy", "ma-crossover", "--param", "fast=4", "--param",
                 "slow=16", "--cadence", "15min", "--start", "2022-06-01", "--end", "2022-06-09", "--quiet"],
                root / "run")


def test_intraday_report_panels_are_filled_on_a_session_axis(intraday_run, monkeypatch):
    from matplotlib.axes import Axes
    from backtests import tearsheet

    out = intraday_run
    eq = pd.read_csv(out / "equity.csv", parse_dates=["date"], index_col="date")
    summary = json.loads((out / "summary.json").read_text())
    page = (out / "report.html").read_text()
    assert "<th>equal-weight (5 symbols)</th>" in page and "AAA,BBB" not in page.split("<h2>")[1]
    lines = []
    real = Axes.plot

    def spy(self, x, y, *a, **kw):
        lines.append((np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"), self.get_xticklabels))
        return real(self, x, y, *a, **kw)

    monkeypatch.setattr(Axes, "plot", spy)
    tearsheet.fig_rolling(eq)
    assert len(lines) == 5  # sharpe and volatility (strategy, benchmark), beta
    for x, y, _ in lines:
        finite = np.isfinite(y)
        assert finite.sum() >= 3, "a rolling panel drawn empty"
        # bar numbers of the run (0 .. slots-1), not calendar numbers (1970 when matplotlib is given bare ints)
        assert x.min() >= 0 and x.max() <= len(eq) - 1 and np.all(np.diff(x) > 0)
    lines.clear()
    tearsheet.fig_equity(eq, pd.DataFrame(columns=["start", "end"]), log=False)
    x = lines[0][0]
    assert x.tolist() == list(range(len(eq)))  # one step per slot: a night is one step, not a 17-hour line
    from backtests.bar_axis import BarAxis

    where, labels = BarAxis(eq.index).ticks()
    assert labels[0] == "2022-06-01" and all(lab.startswith("2022-06") for lab in labels)
    assert summary["sessions"] == 7


def test_exposure_with_stops_on_closes_only_data_is_positions_csvs(runs):
    """A stop that triggers at a close sells at the next one: the holding is still in positions.csv at that
    close, and so in the exposure (summary.json left those bars out: 0.9641 against 0.9681)."""
    from marketdata import load_sample

    assert not load_sample().has_ranges  # the sample is closes only: stops are checked on closes
    out = runs["ma-crossover"]
    trades = pd.read_csv(out / "trades.csv")
    assert (trades["reason"] == "stop_loss").sum() >= 2
    weights = pd.read_csv(out / "positions.csv", index_col="date")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bars_with_position"] == pytest.approx((weights > 0).any(axis=1).mean(), abs=1e-12)
    assert summary["exposure"] == pytest.approx(weights.sum(axis=1).mean(), abs=1e-5)


def test_intraday_forecasts_are_drawn_at_their_slots():
    """An intraday decision is dated by its last bar's start (09:30 for the 09:45 slot): its forecast goes on the
    slot's row, not lost to a reindex onto slot times."""
    from backtests.backtest import BacktestResult
    from backtests.report import forecast_line

    bars = pd.DatetimeIndex(["2022-06-01 09:30", "2022-06-01 09:45", "2022-06-01 10:00"])
    slots = bars + pd.Timedelta(minutes=15)
    eq = pd.DataFrame({"equity": 1.0, "benchmark": 1.0}, index=slots)
    forecasts = pd.DataFrame({"date": bars[[0, 2]], "symbol": "A", "forecast": [10.0, 11.0]})
    result = BacktestResult({"interval": "15m"}, eq, pd.DataFrame(columns=["date", "symbol", "side", "qty", "price",
                            "value", "commission"]), forecasts, pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=bars),
                            pd.DataFrame())
    line = forecast_line(result, "A")
    assert line.index.equals(slots) and line.iloc[0] == 10.0 and np.isnan(line.iloc[1]) and line.iloc[2] == 11.0
