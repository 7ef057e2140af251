"""Parity in money, through the real path: a backtest run by ``python -m backtests.run`` on a CSV, then the live
cycle (``python lambda_function.py --now ...``) on the paper broker with ``MARKET_DATA=csv:`` that same file and
``STRATEGY_CONFIG=`` the run's own ``config.toml``, nothing replaced.

Every order is identical in time, symbol, side, quantity and price (trades.csv's four decimals) to the backtest's
trades, and the account's equity equals the backtest's equity.csv to the cent at every cycle (daily bars: after
the cycle's fills at the close; intraday: at the slot, before its fills, which come with the next bar). The first cycles
run as subprocesses of the command line; the rest call ``live.cycle.run`` in this process with the same
environment (the same code path, without a Python start-up per cycle).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from backtests.run import cli as backtest_cli
from brokers.calendar import MarketCalendar
from live.cycle import run
from marketdata import load_sample

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["KO", "PG", "JNJ", "PEP", "MRK"]
FIRST, LAST = dt.date(2022, 6, 1), dt.date(2022, 6, 30)  # 21 sessions, Juneteenth (observed 20 June) inside
BY_CLI = 2  # cycles run through `python lambda_function.py`; the others through run() in this process


def _paper_env(state: Path, data: Path, config: Path) -> dict[str, str]:
    return {"STATE_DIR": str(state), "BROKER": "paper", "MARKET_DATA": f"csv:{data}", "STRATEGY_CONFIG": str(config),
            "LOG_LEVEL": "WARNING"}


def _cycle(moment: str, env: dict[str, str], cli: bool) -> dict:
    if not cli:
        return run({"now": moment}, env=env)
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "lambda_function.py", "--now", moment, "--quiet"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines() if line.strip()]


def _live_orders(summaries: list[tuple[pd.Timestamp, dict]]) -> list[tuple]:
    rows = []
    for at, s in summaries:
        assert s["status"] in ("traded", "no_change"), s
        for o in s["orders"]:
            assert o["status"] == "filled", o
            rows.append((at, o["symbol"], o["side"], int(o["filled_qty"]), round(float(o["filled_avg_price"]), 4)))
    return sorted(rows)


def _backtest_orders(run_dir: Path, stamp: str) -> list[tuple]:
    t = pd.read_csv(run_dir / "trades.csv")
    return sorted((pd.Timestamp(d), s, side, int(q), round(float(p), 4))
                  for d, s, side, q, p in t[[stamp, "symbol", "side", "qty", "price"]].itertuples(index=False))


def _equity_matches(run_dir: Path, state: Path, key) -> int:
    equity = pd.read_csv(run_dir / "equity.csv", parse_dates=["date"]).set_index("date")["equity"]
    checked = 0
    for entry in _journal(state):
        at = key(entry)
        assert round(entry["inputs"]["account"]["equity"], 2) == pytest.approx(equity.loc[at], abs=0.005), at
        checked += 1
    return checked


def test_twenty_replayed_days_trade_exactly_like_the_backtest_in_money(tmp_path):
    data = tmp_path / "daily.csv"
    sample = load_sample().select(SYMBOLS).closes.loc["2021-06-01":"2022-07-08"]
    sample.round(4).to_csv(data, index_label="date")
    out = tmp_path / "run"
    assert backtest_cli(["--data", str(data), "--symbols", ",".join(SYMBOLS), "--start", str(FIRST), "--end",
                         str(LAST), "--top-n", "3", "--lookback", "20", "--history", "60", "--refit-every", "5",
                         "--max-positions", "none", "--max-order-notional", "none", "--out", str(out), "--no-plot",
                         "--quiet"]) == 0
    assert 'fill = "decision"' in (out / "config.toml").read_text()
    days = [s.date for s in MarketCalendar().sessions(FIRST, LAST)]
    assert len(days) >= 20
    env = _paper_env(tmp_path / "live", data, out / "config.toml")
    # equity.csv's row of a day is the book at its close after the day's fills: the paper account after the cycle
    from brokers.paper import PaperBroker
    from marketdata.provider import CsvProvider

    summaries, after = [], {}
    for i, day in enumerate(days):
        moment = f"{day}T15:45:00-04:00"
        summaries.append((pd.Timestamp(day), _cycle(moment, env, cli=i < BY_CLI)))
        book = PaperBroker(tmp_path / "live" / "paper.sqlite", CsvProvider(str(data)),
                           now=dt.datetime.fromisoformat(moment)).account()
        after[pd.Timestamp(day)] = round(book.equity, 2)
    live, backtest = _live_orders(summaries), _backtest_orders(out, "date")
    assert len(backtest) >= 8 and {r[2] for r in backtest} == {"buy", "sell"}, "the window should trade both ways"
    assert live == backtest
    equity = pd.read_csv(out / "equity.csv", parse_dates=["date"]).set_index("date")["equity"]
    assert list(equity.index) == list(after)
    for day, value in after.items():
        assert value == pytest.approx(equity.loc[day], abs=0.005), day
    # and the journal's account before each cycle is the previous day's book, re-marked at the day's close
    before = [e["inputs"]["account"]["equity"] for e in _journal(tmp_path / "live")]
    assert before[0] == 100_000.0 and len(before) == len(days)
    # the live report's drift re-runs this backtest with the execution model the cycles recorded: nothing differs,
    # and the fees (Alpaca's on sells, in the journal) explain the money to the cent
    from live.drift import backtest_drift
    from live.journal_read import read_journal

    drift = backtest_drift(read_journal(str(tmp_path / "live" / "journal.jsonl")).records)
    assert drift.backtest is not None, drift.note
    assert drift.differences == [] and drift.findings == [] and drift.matched == len(backtest)
    dollars = drift.attribution.dollars
    assert abs(dollars["timing"]) < 0.01 and abs(dollars["unexplained remainder"]) < 0.01, dollars
    assert sum(o.get("fee", 0) for e in _journal(tmp_path / "live") for o in e["orders"]) > 0


def test_two_sessions_of_fifteen_minute_slots_trade_exactly_like_the_backtest_in_money(tmp_path):
    first, last = dt.date(2022, 5, 25), dt.date(2022, 5, 26)
    data, out = _backtest_on_15m_bars(tmp_path, "15min", first, last)
    env = _paper_env(tmp_path / "live", data, out / "config.toml")
    hours = MarketCalendar().sessions(first, last)
    slots = [pd.Timestamp(s.open.replace(tzinfo=None)) + pd.Timedelta(minutes=15 * k)
             for s in hours for k in range(1, 26)]  # 09:45 .. 15:45
    assert len(slots) == 50
    summaries = [(slot, _cycle(slot.tz_localize("America/New_York").isoformat(), env, cli=i < 1))
                 for i, slot in enumerate(slots)]
    live, backtest = _live_orders(summaries), _backtest_orders(out, "date")
    assert len(backtest) >= 10 and {r[2] for r in backtest} == {"buy", "sell"}
    assert live == backtest
    checked = _equity_matches(out, tmp_path / "live",
                              lambda e: pd.Timestamp(dt.datetime.fromisoformat(e["now"]).replace(tzinfo=None)))
    assert checked == len(slots)


def test_the_daily_cadence_on_fifteen_minute_bars_fills_at_the_bar_of_the_decision_moment_in_both_homes(tmp_path):
    """Daily at 15:45 on 15-minute bars: both homes fill at the open of the 15:45 bar (in-process cycles)."""
    first, last = dt.date(2022, 5, 16), dt.date(2022, 5, 27)
    data, out = _backtest_on_15m_bars(tmp_path, "daily", first, last)
    env = _paper_env(tmp_path / "live", data, out / "config.toml")
    moments = [pd.Timestamp(f"{s.date} 15:45") for s in MarketCalendar().sessions(first, last)]
    summaries = [(m, _cycle(m.tz_localize("America/New_York").isoformat(), env, cli=False)) for m in moments]
    live, backtest = _live_orders(summaries), _backtest_orders(out, "date")
    bars = pd.read_csv(data, parse_dates=["timestamp"]).set_index(["timestamp", "symbol"])
    assert len(backtest) >= 4
    for at, symbol, side, _, price in backtest:  # the 15:45 bar's open, slipped 2 bps
        assert price == pytest.approx(bars.at[(at, symbol), "open"] * (1.0002 if side == "buy" else 0.9998), abs=1e-4)
    assert live == backtest
    assert _equity_matches(out, tmp_path / "live",
                           lambda e: pd.Timestamp(dt.datetime.fromisoformat(e["now"]).replace(tzinfo=None))) == len(moments)


def _backtest_on_15m_bars(tmp_path: Path, cadence: str, first: dt.date, last: dt.date) -> tuple[Path, Path]:
    """SYNTHETIC 15-minute bars for May 2022 as a CSV, and a backtest of them at ``cadence`` from the CLI: the
    data file and the run folder (whose config.toml the live cycles then run)."""
    sys.path.insert(0, str(ROOT / "examples"))
    from synthetic_intraday import synthetic_frame

    data = tmp_path / "bars15.csv"
    synthetic_frame("2022-05-02", "2022-05-27", bar="15m").round(4).to_csv(data, index_label="timestamp")
    out = tmp_path / "run"
    assert backtest_cli(["--data", str(data), "--bar", "15m", "--cadence", cadence, "--start", str(first), "--end",
                         str(last), "--top-n", "3", "--lookback", "10", "--history", "60", "--horizon", "2",
                         "--refit-every", "4", "--band", "0.002", "--max-positions", "none",
                         "--max-order-notional", "none", "--out", str(out), "--no-plot", "--quiet"]) == 0
    return data, out
