"""Parity: replaying each day's cycle through run() on the paper broker trades like the backtest on the same data.

The backtest fills at the next bar's price and the paper broker at the replayed moment's price, so quantities and
prices differ slightly; the decisions (date, symbol, side) must not.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from _live_env import SYMBOLS, live_env
from backtests.backtest import BacktestConfig, run_backtest
from brokers.calendar import MarketCalendar
from live.cycle import run
from live.config import LiveConfig
from marketdata import load_sample

FIRST, LAST = dt.date(2022, 6, 1), dt.date(2022, 7, 5)  # 24 sessions, holidays (Juneteenth, July 4th) inside


def test_replayed_cycles_make_the_backtests_trades(tmp_path):
    env = live_env(tmp_path)
    params = LiveConfig.from_env(env).params  # the very parameters the cycles use
    days = [s.date for s in MarketCalendar().sessions(FIRST, LAST)]
    assert len(days) >= 20

    live = set()
    for day in days:
        summary = run({"now": f"{day}T15:45:00-04:00"}, env=env)
        assert summary["status"] in ("traded", "no_change"), summary
        assert summary["provenance"]["data"]["last_date"] == day.isoformat()  # decided on that day's close
        live |= {(day, o["symbol"], o["side"]) for o in summary["orders"] if o["new"] and o["status"] == "filled"}

    # The backtest's last decision fills on the next bar, so it runs one session further.
    end = MarketCalendar().sessions(LAST + dt.timedelta(days=1), LAST + dt.timedelta(days=7))[0].date
    result = run_backtest(load_sample().select(SYMBOLS), params,
                          BacktestConfig(start=str(FIRST), end=str(end), cash=100_000.0, commission=0.0,
                                         benchmark="equal-weight"))
    assert result.rejected.empty
    trades = result.trades
    backtest = {(pd.Timestamp(d).date(), s, side)
                for d, s, side in zip(trades["decision_date"], trades["symbol"], trades["side"])}
    assert len(backtest) >= 6, "the window should trade both ways"
    assert {side for _, _, side in backtest} == {"buy", "sell"}
    assert live == backtest
