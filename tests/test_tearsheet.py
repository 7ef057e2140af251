"""report.html: its statistics recomputed with quantstats and empyrical, its figures embedded, nothing fetched."""

from __future__ import annotations

import base64
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from backtests import metrics, round_trips as rt
from backtests.run import cli
from tests._backtest_fixtures import SHORT_ARGS

qs = pytest.importorskip("quantstats")
ep = pytest.importorskip("empyrical")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sheet"
    # the seed's uncapped sizing (rules off) concentrates the book, which the warning must catch
    assert cli(SHORT_ARGS + ["--engine", "exact", "--max-order-notional", "none", "--max-positions", "none",
                             "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def curves(run_dir):
    eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"], index_col="date")
    return eq["equity"].pct_change().dropna(), eq["benchmark"].pct_change().dropna()


@pytest.fixture(scope="module")
def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_return_statistics_match_quantstats_and_empyrical(summary, curves):
    r, b = curves
    # equity.csv is in cents, summary.json from the unrounded curve: agreement to 1e-4 is the rounding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert summary["calmar"] == pytest.approx(ep.calmar_ratio(r), rel=1e-4)
        assert summary["profit_factor"] == pytest.approx(qs.stats.profit_factor(r), rel=1e-4)
        alpha, beta = ep.alpha_beta(r, b)
        rel = summary["relative"]
        assert rel["alpha"] == pytest.approx(alpha, rel=1e-3) and rel["beta"] == pytest.approx(beta, rel=1e-4)
        assert rel["information_ratio"] == pytest.approx(qs.stats.information_ratio(r, b) * np.sqrt(252), rel=1e-3)
        assert rel["correlation"] == pytest.approx(r.corr(b), rel=1e-4)
        assert summary["worst_day"]["return"] == pytest.approx(qs.stats.worst(r), rel=1e-4)
        assert summary["worst_day"]["date"] == r.idxmin().date().isoformat()
        monthly = ep.aggregate_returns(r, "monthly")
        assert summary["worst_month"]["return"] == pytest.approx(monthly.min(), rel=1e-4)
        assert summary["best_month"]["return"] == pytest.approx(monthly.max(), rel=1e-4)
        details = qs.stats.drawdown_details(qs.stats.to_drawdown_series(r))
        assert summary["longest_drawdown"]["days"] == int(details["days"].max())
        assert summary["max_drawdown"] == pytest.approx(-ep.max_drawdown(r), rel=1e-4)


def test_monthly_and_rolling_tables_match_the_libraries(run_dir, curves):
    r, _ = curves
    eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"], index_col="date")["equity"]
    table = metrics.monthly_table(eq)
    monthly = ep.aggregate_returns(r, "monthly")
    for (year, month), value in monthly.items():
        assert table.at[year, month] == pytest.approx(value, rel=1e-12)
    for year, value in ep.aggregate_returns(r, "yearly").items():
        assert table.at[year, "year"] == pytest.approx(value, rel=1e-12)
    roll = metrics.rolling_stats(eq, 20)
    assert roll["volatility"].dropna().to_numpy() == pytest.approx(
        ep.roll_annual_volatility(r, 20).dropna().to_numpy(), rel=1e-10)
    assert roll["sharpe"].dropna().to_numpy() == pytest.approx(
        ep.roll_sharpe_ratio(r, 20).dropna().to_numpy(), rel=1e-10)


def test_report_html_is_self_contained_and_holds_the_figures(run_dir, summary):
    page = (run_dir / "report.html").read_text()
    images = re.findall(r'<img class="[^"]*" id="fig-([a-z-]+)" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    names = [n for n, _ in images]
    assert names == ["equity", "equity-log", "drawdown", "monthly", "rolling", "distribution", "symbols",
                     "concentration", "trips"]
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "@import" not in page
    for text in (f"{summary['calmar']:.2f}", f"{summary['relative']['beta']:.2f}",
                 f"{summary['relative']['information_ratio']:.2f}", f"{summary['worst_month']['return']:+.2%}",
                 summary["worst_day"]["date"], f"{summary['final_equity']:,.2f}"):
        assert text in page, text
    trips = pd.read_csv(run_dir / "round_trips.csv")
    assert page.count("<tr>", page.index('id="round-trips"')) == len(trips) + 1
    for sym in trips["symbol"].unique():
        assert f"<td>{sym}</td>" in page


def test_concentration_warning_names_the_name_and_the_days(run_dir, summary):
    weights = pd.read_csv(run_dir / "positions.csv", parse_dates=["date"], index_col="date")
    over = weights[weights.max(axis=1) > 0.5]
    c = summary["concentration"]
    assert c["days_over_threshold"] == len(over) > 0.1 * len(weights)
    top = over.idxmax(axis=1).value_counts()
    assert c["top_symbol_over_threshold"] == top.index[0] and c["top_symbol_days"] == top.iloc[0]
    assert f"on {len(over)} of {len(weights)} days" in c["warning"] and top.index[0] in c["warning"]
    assert c["max_weight"] == pytest.approx(weights.max().max(), abs=1e-6)
    page = (run_dir / "report.html").read_text()
    assert 'id="concentration-warning"' in page and f"on {len(over)} of {len(weights)} days" in page


def test_no_warning_for_a_spread_book():
    conc = pd.DataFrame({"max_weight": [0.3, 0.55, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
                         "max_symbol": ["A"] * 11, "names": [3] * 11, "exposure": [0.9] * 11},
                        index=pd.bdate_range("2022-01-03", periods=11))
    s = rt.concentration_summary(conc)
    assert s["days_over_threshold"] == 1 and s["warning"] is None  # 1 of 11 days is under 10%
    assert rt.concentration_summary(conc, rt.ConcentrationRule(share_of_days=0.05))["warning"] is not None


def test_report_png_draws_the_forecast_symbol_with_the_largest_absolute_pnl(run_dir, summary):
    from backtests.report import focus_symbol
    from backtests.backtest import BacktestResult

    trips = pd.read_csv(run_dir / "round_trips.csv")
    pnl = trips.groupby("symbol")["pnl"].sum()
    trades = pd.read_csv(run_dir / "trades.csv", parse_dates=["date"])
    eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"], index_col="date")
    from marketdata import load_sample

    forecasts = pd.DataFrame({"date": eq.index[0], "symbol": summary["symbols"], "forecast": 1.0})
    result = BacktestResult(summary, eq, trades, forecasts, load_sample().closes[summary["symbols"]], pd.DataFrame())
    assert focus_symbol(result) == pnl.abs().idxmax() == summary["round_trip_stats"]["largest_pnl_symbol"]


def test_risk_and_payoff_figures_match_quantstats(run_dir, summary, curves):
    r, b = curves
    risk = summary["risk"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert risk["var"] == pytest.approx(qs.stats.value_at_risk(r), rel=1e-3)
        assert risk["cvar"] == pytest.approx(qs.stats.conditional_value_at_risk(r), rel=1e-3)
        assert risk["avg_win"] == pytest.approx(qs.stats.avg_win(r), rel=1e-3)
        assert risk["avg_loss"] == pytest.approx(qs.stats.avg_loss(r), rel=1e-3)
        assert risk["payoff"] == pytest.approx(qs.stats.payoff_ratio(r), rel=1e-3)
        assert risk["win_days"] == pytest.approx(qs.stats.win_rate(r), rel=1e-3)
        eq = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"], index_col="date")
        beta = metrics.rolling_beta(eq["equity"], eq["benchmark"], 20)
        theirs = qs.stats.rolling_greeks(r, b, periods=20)["beta"]
        assert beta.dropna().to_numpy() == pytest.approx(theirs.dropna().to_numpy(), rel=1e-6)
        years = ep.aggregate_returns(r, "yearly")
        bench_years = ep.aggregate_returns(b, "yearly")
    eoy = pd.DataFrame(summary["eoy"]).set_index("year")
    for year, value in years.items():
        assert eoy.at[year, "strategy"] == pytest.approx(value, rel=1e-4)
        assert eoy.at[year, "benchmark"] == pytest.approx(bench_years[year], rel=1e-4)
        assert eoy.at[year, "won"] == (value > bench_years[year])
    page = (run_dir / "report.html").read_text()
    for text in (f"{risk['var']:+.2%}", f"{risk['cvar']:+.2%}", f"{risk['payoff']:.2f}", 'id="eoy"',
                 "Rolling Sharpe, volatility and beta"):
        assert text in page, text
    trips = pd.read_csv(run_dir / "round_trips.csv")
    closed = trips.loc[trips["status"] == "closed", "trip_pnl"]
    rts = summary["round_trip_stats"]
    assert rts["expectancy"] == pytest.approx(closed.mean(), abs=0.01)
    assert rts["expectancy"] == pytest.approx(rts["win_rate"] * rts["avg_win"] + (1 - rts["win_rate"]) * rts["avg_loss"])


def test_per_symbol_bars_draw_negative_open_pnl_from_zero(monkeypatch):
    """The open P&L bar starts at zero (never stacked on the closed one, where a loss looked like a gain)."""
    from matplotlib.axes import Axes
    from backtests import tearsheet

    drawn = []
    real = Axes.barh

    def spy(self, y, width, height=0.8, left=None, **kw):
        drawn.append((kw.get("label"), list(np.atleast_1d(width)), left))
        return real(self, y, width, height, left=left, **kw)

    monkeypatch.setattr(Axes, "barh", spy)
    per = pd.DataFrame({"symbol": ["A"], "pnl": [600.0], "closed_pnl": [1000.0], "open_pnl": [-400.0],
                        "bars_held": [5]})
    tearsheet.fig_symbols(per)
    open_bar = [d for d in drawn if d[0] and d[0].startswith("open")][0]
    assert open_bar[1] == [-400.0] and open_bar[2] is None
