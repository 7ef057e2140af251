"""The 15-minute backtest from the command line, end to end, on SYNTHETIC intraday bars.

The CSVs here come from ``examples/synthetic_intraday.py`` (a random walk with a repeating intraday shape on the
real XNYS sessions, made up, never market data); yfinance runs go through the recorded-response Yahoo stub
(synthetic bars too), Alpaca runs through the loopback data stand-in (synthetic bars). What is tested is the
plumbing: the run folder, slot timestamps, annualisation by sessions, the config re-run, the seed's config and
the bad-input one-liners with the cache kept.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtests import metrics
from backtests.run import cli
from marketdata.bars import session_hours

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--cadence", "15min", "--bar", "15m", "--history", "60", "--lookback", "10", "--horizon", "2",
        "--refit-every", "4", "--top-n", "3", "--band", "0.002"]


def _synthetic():
    spec = importlib.util.spec_from_file_location("synthetic_intraday", ROOT / "examples" / "synthetic_intraday.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def csv15(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic_15m.csv"
    _synthetic().main([str(path), "--start", "2022-05-16", "--end", "2022-06-10"])
    return path


@pytest.fixture(scope="module")
def first_run(csv15, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    done = subprocess.run([sys.executable, "-m", "backtests.run", "--data", str(csv15), *FAST, "--start",
                           "2022-06-01", "--end", "2022-06-08", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done, out


def _slots(first: str, last: str) -> set[pd.Timestamp]:
    hours = session_hours(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    return {t for o in hours["open"] for t in pd.date_range(o + pd.Timedelta(minutes=15), periods=25, freq="15min")}


def test_a_15_minute_backtest_prints_its_table_and_writes_its_run_folder(first_run):
    done, out = first_run
    assert done.returncode == 0, done.stderr
    head = done.stdout.splitlines()[0]
    assert head == "prophet-trend backtest 2022-06-01 to 2022-06-08 (150 slots in 6 sessions, 15m bars, every " \
                   "15min, 5 symbols)", head
    assert "Sharpe (252 sessions, rf 0)" in done.stdout and "Worst session / month" in done.stdout
    for name in ("summary.json", "trades.csv", "equity.csv", "config.toml", "report.png", "report.html",
                 "round_trips.csv", "positions.csv"):
        assert (out / name).stat().st_size > 0, name
    slots = _slots("2022-06-01", "2022-06-08")
    equity = pd.read_csv(out / "equity.csv", parse_dates=["date"])
    assert set(equity["date"]) == slots and len(equity) == 150
    trades = pd.read_csv(out / "trades.csv", parse_dates=["date", "decision_date"])
    assert len(trades) >= 10 and set(trades["decision_date"]) <= slots
    assert (trades["date"] == trades["decision_date"]).all()  # filled at the open of the bar starting at the slot
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sessions"] == 6 and summary["interval"] == "15m" and summary["cadence"]["cadence"] == "15min"
    assert summary["replay_max_error"] < 0.01, "positions.csv must replay the run's own equity"
    assert "returns per session" in (out / "report.html").read_text()


def test_sharpe_and_cagr_count_sessions_not_bars(first_run):
    _, out = first_run
    summary = json.loads((out / "summary.json").read_text())
    eq = pd.read_csv(out / "equity.csv", parse_dates=["date"]).set_index("date")["equity"]
    closes = np.r_[summary["config"]["cash"], eq.groupby(eq.index.normalize()).last().to_numpy()]
    r = closes[1:] / closes[:-1] - 1
    assert len(r) == 6  # one return per session, the first session's included
    assert summary["final_equity"] == pytest.approx(eq.iloc[-1], abs=0.01)
    assert summary["total_return"] == pytest.approx(closes[-1] / closes[0] - 1, abs=1e-6)
    assert summary["cagr"] == pytest.approx((closes[-1] / closes[0]) ** (252 / 6) - 1, rel=1e-4)
    assert summary["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252), rel=1e-3)
    assert summary["volatility"] == pytest.approx(r.std(ddof=1) * np.sqrt(252), rel=1e-3)
    assert summary["worst_day"]["return"] == pytest.approx(r.min(), abs=1e-6)
    assert summary["max_drawdown"] == pytest.approx(float((1 - eq / eq.cummax()).max()), abs=1e-6)  # every slot


def test_metrics_annualise_an_intraday_curve_by_its_sessions():
    stamps = pd.DatetimeIndex([t for d in ("2022-06-01", "2022-06-02", "2022-06-03")
                               for t in pd.date_range(f"{d} 09:45", periods=25, freq="15min")])
    rng = np.random.default_rng(3)
    eq = pd.Series(100_000 * np.exp(np.cumsum(rng.normal(0.0002, 0.002, len(stamps)))), index=stamps)
    sessions = metrics.session_equity(eq)
    assert len(sessions) == 4 and sessions.iloc[0] == eq.iloc[0] and sessions.iloc[-1] == eq.iloc[-1]
    perf = metrics.performance(eq)
    assert perf["cagr"] == pytest.approx((eq.iloc[-1] / eq.iloc[0]) ** (252 / 3) - 1)
    daily = metrics.performance(pd.Series(sessions.to_numpy(), index=pd.bdate_range("2022-05-31", periods=4)))
    assert perf["sharpe"] == pytest.approx(daily["sharpe"]) and perf["sortino"] == pytest.approx(daily["sortino"])
    assert perf["max_drawdown"] >= daily["max_drawdown"]
    rel = metrics.relative(eq, eq * 0 + eq.iloc[0] * np.linspace(1, 1.01, len(eq)))
    assert np.isfinite(rel["alpha"])


def test_the_runs_config_reproduces_an_intraday_run_byte_for_byte(first_run, tmp_path, capsys):
    _, out = first_run
    assert cli(["--config", str(out / "config.toml"), "--out", str(tmp_path / "b"), "--quiet", "--no-plot"]) == 0
    for name in ("trades.csv", "equity.csv", "config.toml", "round_trips.csv", "positions.csv"):
        assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    config = (out / "config.toml").read_text()
    assert 'cadence = "15min"' in config and 'bar = "15m"' in config


def test_the_seeds_variant_config_loads_and_runs_on_a_short_synthetic_window(tmp_path, capsys):
    from strategies.config import StrategyConfig

    cfg = StrategyConfig.load(ROOT / "examples" / "seed_15min.toml")
    strategy = cfg.build()
    assert cfg.cadence.kind == "15min" and strategy.params.bar == "1m" and strategy.params.today_only
    assert (strategy.params.history, strategy.params.horizon, strategy.params.refit_every) == (390, 15, 1)
    path = tmp_path / "synthetic_1m.csv"
    _synthetic().main([str(path), "--bar", "1m", "--start", "2022-05-31", "--end", "2022-06-02",
                       "--symbols", "AAA,BBB,CCC"])
    capsys.readouterr()
    assert cli(["--config", str(ROOT / "examples" / "seed_15min.toml"), "--data", str(path), "--start",
                "2022-06-02", "--end", "2022-06-02", "--out", str(tmp_path / "seed"), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("seed-15min backtest 2022-06-02 to 2022-06-02 (25 slots in 1 session, 1m bars")
    trades = pd.read_csv(tmp_path / "seed" / "trades.csv", parse_dates=["decision_date"])
    assert len(trades) and set(trades["decision_date"].dt.minute) <= {0, 15, 30, 45}
    summary = json.loads((tmp_path / "seed" / "summary.json").read_text())
    assert summary["strategy"]["name"] == "seed-15min" and summary["params"]["today_only"] is True


# ------------------------------------------------------------------------------------------------------------
# Bad input, end to end: one `error:` line, exit 2, nothing cached lost


def _bad(args, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli([*args, "--quiet", "--no-plot"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_mixed_interval_csv_and_a_bar_outside_the_session_are_one_line_errors(csv15, tmp_path, capsys):
    text = csv15.read_text().splitlines()
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join(text[:3] + [text[3].replace(" 10:00,", " 09:50,")] + text[4:]) + "\n")
    line = _bad(["--data", str(mixed), *FAST, "--start", "2022-06-01", "--end", "2022-06-03",
                 "--out", str(tmp_path / "o")], capsys)
    assert "mixed intervals" in line and "line 4" in line
    outside = tmp_path / "outside.csv"
    outside.write_text("\n".join(text + ["2022-06-10 16:00,AAA,1,1,1,1"]) + "\n")
    line = _bad(["--data", str(outside), *FAST, "--out", str(tmp_path / "o")], capsys)
    assert "2022-06-10 16:00:00" in line and "outside the New York regular session" in line
    assert not (tmp_path / "o").exists()


def test_a_cadence_that_does_not_divide_the_session_and_a_bar_the_data_lacks(csv15, tmp_path, capsys):
    line = _bad(["--data", str(csv15), *FAST, "--cadence", "7min", "--out", str(tmp_path / "o")], capsys)
    assert "does not divide the 390-minute session" in line
    line = _bad(["--data", str(csv15), *FAST, "--bar", "5m", "--start", "2022-06-01", "--end", "2022-06-03",
                 "--out", str(tmp_path / "o")], capsys)
    assert line == "error: the strategy runs on 5m bars but the data has 15m bars; use --bar 15m or 5m data"
    line = _bad(["--data", str(csv15), *FAST, "--cadence", "10min", "--start", "2022-06-01", "--end",
                 "2022-06-03", "--out", str(tmp_path / "o")], capsys)
    assert "does not fall on 15m bar ends" in line


def test_yfinance_intraday_beyond_yahoos_limit_is_one_line_and_keeps_the_cache(tmp_path, monkeypatch, capsys):
    import marketdata.yahoo as yahoo
    from _yahoo_stub import YahooStub

    YahooStub().install(monkeypatch)
    monkeypatch.setattr(yahoo, "_new_york_today", lambda: dt.date(2022, 12, 28))
    monkeypatch.setenv("PROPHETTREND_CACHE", str(tmp_path / "cache"))
    common = ["--data", "yfinance", "--symbols", "AAPL,KO", *FAST]
    assert cli([*common, "--start", "2022-12-19", "--end", "2022-12-22", "--out", str(tmp_path / "ok"),
                "--quiet", "--no-plot"]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["interval"] == "15m" and summary["data"]["provider"] == "yfinance"
    cached = sorted((tmp_path / "cache").rglob("*.*"))
    before = {p: p.read_bytes() for p in cached if p.is_file()}
    assert any("15m" in str(p) for p in before)
    line = _bad([*common, "--start", "2022-09-01", "--end", "2022-12-22", "--out", str(tmp_path / "far")], capsys)
    assert line.startswith("error: yfinance serves 15m bars only for the last 60 days (from 2022-10-30)")
    assert "AAPL, KO" in line and "--source alpaca" in line
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "far").exists()


@pytest.fixture()
def alpaca_data(monkeypatch, tmp_path):
    from _alpaca_data_stub import alpaca_data_stub

    with alpaca_data_stub() as stub:
        for key, value in stub.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PROPHETTREND_CACHE", str(tmp_path / "cache"))
        yield stub


def test_a_15_minute_backtest_on_alpaca_bars_and_a_429_storm_keeps_the_cache(alpaca_data, tmp_path, capsys):
    common = ["--data", "alpaca", "--symbols", "AAPL,KO", *FAST]
    assert cli([*common, "--start", "2024-06-26", "--end", "2024-06-28", "--out", str(tmp_path / "ok"),
                "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert "(75 slots in 3 sessions, 15m bars, every 15min, 2 symbols)" in printed
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["data"]["provider"] == "alpaca" and summary["data"]["feed"] == "iex"
    assert all(r["timeframe"] == "15Min" for r in alpaca_data.state.bars_requests())
    before = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert before
    alpaca_data.state.rate_limit, alpaca_data.state.retry_after = 1000, 0
    line = _bad([*common, "--start", "2024-06-26", "--end", "2024-07-02", "--out", str(tmp_path / "storm")], capsys)
    assert "could not be fetched for AAPL, KO (Alpaca rate limit, HTTP 429, still refused after retries)" in line
    assert "cached bars are kept (to 2024-06-28)" in line
    line = _bad(["--data", "alpaca", "--symbols", "AAPL,MSFT", *FAST, "--start", "2024-06-26", "--end", "2024-06-28",
                 "--out", str(tmp_path / "storm")], capsys)
    assert "MSFT (Alpaca rate limit, HTTP 429, still refused after retries); 1 other symbol(s) loaded" in line
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "storm").exists()
    line = _bad(["--data", "alpaca", *FAST, "--out", str(tmp_path / "none")], capsys)
    assert line == "error: --data alpaca needs --symbols (or a universe of symbols in the config) for 15m bars"


# ------------------------------------------------------------------------------------------------------------
# Live: one Alpaca for prices and trading, at a 15-minute slot


def test_a_live_cycle_at_a_slot_on_alpaca_data_and_the_alpaca_broker_decides_on_bars_complete_before_it(tmp_path):
    """BROKER=alpaca against the trading stand-in and MARKET_DATA=alpaca against the data stand-in, with ONE pair
    of keys (the data stand-in is given the trading one's); its bars are SYNTHETIC. The data source already has
    bars after the slot (its clock runs ahead): the cycle must still decide on the bars complete at the slot."""
    from _alpaca_data_stub import alpaca_data_stub
    from _alpaca_stub import alpaca_stub
    from _live_env import live_env
    from live.cycle import run
    from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider
    from strategies import ProphetTrend

    slot = "2024-07-01T11:30:00-04:00"
    symbols = ["AAPL", "KO", "MSFT"]
    with alpaca_stub() as trading, alpaca_data_stub(key_id=trading.key_id) as data:
        data.state.secret = trading.secret  # the same keys serve both, as on Alpaca
        data.state.now = dt.datetime(2024, 7, 1, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
        trading.state.set_now(slot)
        trading.state.fill_market_orders = True
        reference = AlpacaDataProvider(AlpacaDataConfig(trading.key_id, trading.secret, url=data.url),
                                       cache_dir=tmp_path / "ref")
        params = dict(bar="15m", top_n=2, lookback=10, history=60, horizon=2, refit_every=4, band=0.0005)
        window = ProphetTrend(**params).warmup_bars + 1
        seen = reference.history(symbols, end=dt.datetime.fromisoformat(slot), bars=window, interval="15m")
        assert seen.closes.index[-1] == pd.Timestamp("2024-07-01 11:15")  # the bar that completes at the slot
        last = seen.closes.iloc[-1]
        trading.state.prices.update({s: float(last[s]) for s in symbols})
        env = live_env(tmp_path / "live", BROKER="alpaca", MARKET_DATA="alpaca", APCA_API_DATA_URL=data.url,
                       PROPHETTREND_CACHE=str(tmp_path / "cache"), CADENCE="15min", UNIVERSE=",".join(symbols),
                       MAX_POSITIONS="none", **{f"STRATEGY_{k.upper()}": str(v) for k, v in params.items()},
                       **trading.env())
        requests_before = len(data.state.bars_requests())
        summary = run({}, env=env)  # the time is the trading stand-in's clock: the slot
        assert summary["status"] in ("traded", "no_change"), summary
        assert summary["broker"] == "alpaca-paper" and summary["decision"]["due"]
        assert summary["provenance"]["data"]["provider"] == "alpaca"
        assert len(data.state.bars_requests()) > requests_before, "prices must come from Alpaca's data API"
        assert all(r["timeframe"] == "15Min" for r in data.state.bars_requests())
        expected = ProphetTrend(**params).decide(seen.closes, {}, 100_000.0)
        got = {s: sig["decision"] for s, sig in summary["signals"].items()}
        assert got == {s: sig.action for s, sig in expected.signals.items()}
        assert {s: round(sig["forecast"], 6) for s, sig in summary["signals"].items() if sig.get("forecast")} == \
               {s: round(sig.forecast, 6) for s, sig in expected.signals.items() if getattr(sig, "forecast", None)}
        sent = trading.state.submitted()
        assert sorted(b["client_order_id"] for b in sent) == sorted(o["client_order_id"] for o in summary["orders"])
        assert all("s46-" in o["client_order_id"] for o in summary["orders"])  # 11:30 is slot 46 of 15 minutes


def test_fitting_on_two_processes_makes_the_same_run_byte_for_byte(tmp_path):
    from backtests.run import cli

    args = ["--symbols", "AAPL,KO,PG,XOM", "--start", "2022-09-01", "--end", "2022-12-28", "--top-n", "2",
            "--history", "60", "--refit-every", "1", "--quiet", "--no-plot"]
    assert cli(args + ["--out", str(tmp_path / "one")]) == 0
    assert cli(args + ["--workers", "2", "--out", str(tmp_path / "two")]) == 0
    for name in ("trades.csv", "equity.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
