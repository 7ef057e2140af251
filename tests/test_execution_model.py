"""The execution model (strategies.execution) in both homes: fee-aware sizing, dated regulatory fees, the
decision-moment fill, and a cycle whose every order the broker refused."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from _live_env import SYMBOLS, live_env, stub_at_slot
from backtests.backtest import BacktestConfig, run_backtest
from backtests.run import cli
from live import metrics
from live.cycle import run
from marketdata import load_sample
from strategies import Rules
from strategies.base import Strategy
from strategies.execution import Costs, fee_rates

WINDOW = ["--start", "2022-01-03", "--end", "2022-12-28", "--no-plot", "--quiet"]


class AllIn(Strategy):
    """Every cent in the one name with the best 5-bar return; nothing else."""

    name = "all-in"
    warmup_bars = 6

    def decide(self, closes, positions, cash):
        ret = (closes.iloc[-1] / closes.iloc[-6] - 1).dropna().sort_values(ascending=False)
        return {ret.index[0]: 1.0}


@pytest.mark.parametrize("commission", ["0", "0.001"])
def test_ma_crossover_investing_everything_gets_no_buy_rejected(tmp_path, commission):
    """Sizing includes slippage and the commission: no buy is sent that the broker would refuse for cents
    (before: 50 rejected buys with the 0.001 commission)."""
    out = tmp_path / "run"
    assert cli(["--strategy", "ma-crossover", "--param", "invest=1.0", "--commission", commission, "--out", str(out),
                *WINDOW]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trades"] >= 20 and summary["rejected_orders"] == 0
    trades = pd.read_csv(out / "trades.csv")
    assert (trades["commission"] > 0).all() if commission != "0" else (trades.loc[trades.side == "buy", "commission"] == 0).all()


def test_a_strategy_putting_all_cash_in_one_name_trades_with_a_commission():
    data = load_sample().select(["AAPL", "KO", "XOM", "JPM"])
    config = BacktestConfig(start="2022-06-01", end="2022-09-30", commission=0.001, benchmark="equal-weight",
                            rules=Rules(max_order_notional=None))
    result = run_backtest(data, AllIn(), config)
    assert result.rejected.empty
    buys = result.trades[result.trades["side"] == "buy"]
    assert len(buys) >= 3
    # on a day that only bought, the buy took almost all the cash: less than one share and its costs is left
    cash = result.equity["cash"]  # the book at the close, after the day's fills
    only_buys = [d for d, day in result.trades.groupby("date") if set(day["side"]) == {"buy"}]
    assert only_buys
    for d in only_buys:
        price = float(data.closes.at[d, buys[buys["date"] == d]["symbol"].iloc[0]])
        assert 0 <= cash.loc[d] < Costs(commission=0.001).buy_cost(1, price)


def test_sells_pay_alpacas_dated_sec_fee_and_finra_taf_rounded_up_to_the_cent():
    assert fee_rates(dt.date(2021, 2, 24)).sec_per_million == 22.10
    assert fee_rates(dt.date(2021, 2, 25)).sec_per_million == 5.10
    costs = Costs(slippage_bps=0.0)
    # 1,000 shares at 50: SEC 50,000 x 5.10 / 1e6 = 0.255 -> 0.26; TAF 1,000 x 0.000119 = 0.119 -> 0.12
    assert costs.fees("sell", 1000, 50.0, dt.date(2021, 6, 1)) == pytest.approx(0.38)
    assert costs.fees("buy", 1000, 50.0, dt.date(2021, 6, 1)) == 0.0
    # the TAF is capped per trade: 100,000 shares x 0.000166 = 16.60 -> 8.30 (2024 onward)
    assert costs.fees("sell", 100_000, 1.0, dt.date(2024, 6, 3)) == pytest.approx(2.78 + 8.30)
    # and the backtest charges exactly these on its sells, nothing on its buys
    data = load_sample().select(["AAPL", "KO", "XOM", "JPM"])
    config = BacktestConfig(start="2022-06-01", end="2022-09-30", benchmark="equal-weight")
    trades = run_backtest(data, AllIn(), config).trades
    sells = trades[trades["side"] == "sell"]
    assert len(sells) >= 3 and (trades.loc[trades.side == "buy", "commission"] == 0).all()
    for t in sells.itertuples():
        assert t.commission == pytest.approx(config.execution.costs.fees("sell", t.qty, t.price, t.date.date()))


def test_daily_orders_fill_at_the_decision_bars_close_by_default_and_next_bar_is_the_research_option():
    data = load_sample().select(["AAPL", "KO", "XOM", "JPM"])
    closes = data.closes
    now = run_backtest(data, AllIn(), BacktestConfig(start="2022-06-01", end="2022-07-29", benchmark="equal-weight"))
    later = run_backtest(data, AllIn(), BacktestConfig(start="2022-06-01", end="2022-07-29", benchmark="equal-weight",
                                                       fill="next-bar"))
    slip = 2.0 / 10_000
    for t in now.trades.itertuples():
        assert t.date == t.decision_date
        assert t.price == pytest.approx(closes.at[t.date, t.symbol] * (1 + slip if t.side == "buy" else 1 - slip))
    nxt = later.trades
    assert len(nxt) and (nxt["date"] > nxt["decision_date"]).all()
    assert now.summary["execution"]["fill"] == "decision" and later.summary["execution"]["fill"] == "next-bar"


def test_a_cycle_whose_every_order_the_broker_refuses_is_refused_and_counted_as_an_error(tmp_path):
    """Alpaca (the loopback stub, as strict as Alpaca) refuses every order: trading is halted in every name."""
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, SYMBOLS, fill=True)
        stub.state.halted.update(SYMBOLS)
        summary = run({}, env=live_env(tmp_path, **stub.env()))
    assert summary["orders"] and {o["fate"] for o in summary["orders"]} == {"refused"}, summary
    assert summary["status"] == "refused"
    line = metrics.emf_line(summary, function="local", timestamp_ms=0)
    assert line["CycleErrors"] == 1 and line["OrdersRefused"] == len(summary["orders"]) and line["OrdersSent"] == 0


def test_one_refusal_among_sent_orders_still_trades_and_no_alarm(tmp_path):
    from _alpaca_stub import alpaca_stub

    with alpaca_stub() as stub:
        stub_at_slot(stub, SYMBOLS, fill=True)
        planned = run({"dry_run": True}, env=live_env(tmp_path / "plan", **stub.env()))["orders"]
        stub.state.halted.add(planned[0]["symbol"])
        summary = run({}, env=live_env(tmp_path, **stub.env()))
    assert summary["status"] == "traded"
    assert metrics.emf_line(summary, function="local", timestamp_ms=0)["CycleErrors"] == 0
