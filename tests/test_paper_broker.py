"""The SQLite paper broker and the NYSE calendar behind it: fills, persistence, uniqueness, clock."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from brokers.base import BrokerError, DuplicateOrderError, OrderRefused, OrderRequest
from brokers.calendar import NEW_YORK, MarketCalendar
from brokers.paper import PaperBroker
from marketdata.provider import SampleProvider

ROOT = Path(__file__).resolve().parents[1]
OPEN_MOMENT = dt.datetime(2022, 6, 1, 15, 45, tzinfo=NEW_YORK)


@pytest.fixture(scope="module")
def prices():
    return SampleProvider()


def close_on(prices, symbol: str, day: str) -> float:
    return float(prices.data.closes.loc[day, symbol])


def test_market_order_fills_at_the_moments_price_and_state_persists(tmp_path, prices):
    path = tmp_path / "paper.sqlite"
    broker = PaperBroker(path, prices, now=OPEN_MOMENT, cash=10_000.0)
    order = broker.submit(OrderRequest("KO", "buy", 10, client_order_id="t-ko-buy"))
    price = close_on(prices, "KO", "2022-06-01")
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("filled", 10, price)

    later = dt.datetime(2022, 6, 8, 11, 0, tzinfo=NEW_YORK)
    reopened = PaperBroker(path, prices, now=later, cash=999.0)  # cash only seeds a new file
    assert reopened.positions()["KO"].qty == 10
    assert reopened.account().cash == pytest.approx(10_000.0 - 10 * price)
    sell = reopened.submit(OrderRequest("KO", "sell", 4, client_order_id="t-ko-sell"))
    assert sell.filled_avg_price == close_on(prices, "KO", "2022-06-08")
    assert reopened.positions()["KO"].qty == 6
    assert reopened.account().cash == pytest.approx(10_000.0 - 10 * price + 4 * sell.filled_avg_price)


def test_client_order_id_is_unique_across_instances(tmp_path, prices):
    path = tmp_path / "paper.sqlite"
    PaperBroker(path, prices, now=OPEN_MOMENT).submit(OrderRequest("PG", "buy", 1, client_order_id="same-id"))
    again = PaperBroker(path, prices, now=OPEN_MOMENT)
    with pytest.raises(DuplicateOrderError):
        again.submit(OrderRequest("PG", "buy", 5, client_order_id="same-id"))
    assert again.order_by_client_id("same-id").qty == 1
    assert again.order_by_client_id("unknown") is None
    assert again.positions()["PG"].qty == 1


def test_never_sells_more_than_held_nor_spends_more_than_cash(tmp_path, prices):
    broker = PaperBroker(tmp_path / "p.sqlite", prices, now=OPEN_MOMENT, cash=1_000.0)
    with pytest.raises(OrderRefused, match=r"insufficient qty available for order \(requested: 1, available: 0\)"):
        broker.submit(OrderRequest("KO", "sell", 1, client_order_id="s"))
    with pytest.raises(OrderRefused, match="insufficient buying power"):
        broker.submit(OrderRequest("UNH", "buy", 100, client_order_id="b"))
    assert broker.positions() == {} and broker.orders() == []  # refused, as at Alpaca: nothing recorded
    assert broker.account().cash == 1_000.0


def test_unknown_symbol_and_overlong_id_are_refusals_of_that_order(tmp_path, prices):
    saturday = dt.datetime(2022, 6, 4, 10, 0, tzinfo=NEW_YORK)
    for now in (OPEN_MOMENT, saturday):  # refused at once, not queued to fail later
        broker = PaperBroker(tmp_path / f"p-{now:%d}.sqlite", prices, now=now)
        with pytest.raises(OrderRefused, match="no price for NOSUCH"):
            broker.submit(OrderRequest("NOSUCH", "buy", 1, client_order_id="u"))
        with pytest.raises(OrderRefused, match="1 to 48 characters"):
            broker.submit(OrderRequest("KO", "buy", 1, client_order_id="x" * 49))
        assert broker.orders() == []
        assert broker.submit(OrderRequest("KO", "buy", 1, client_order_id="x" * 48)).qty == 1


def test_queued_orders_hold_shares_and_buying_power_until_they_fill(tmp_path, prices):
    path = tmp_path / "p.sqlite"
    PaperBroker(path, prices, now=OPEN_MOMENT, cash=10_000.0).submit(OrderRequest("KO", "buy", 10, "ko-10"))
    saturday = PaperBroker(path, prices, now=dt.datetime(2022, 6, 4, 10, 0, tzinfo=NEW_YORK))
    before = saturday.account()
    saturday.submit(OrderRequest("KO", "sell", 6, client_order_id="sell-6"))  # queued: the market is closed
    assert (saturday.positions()["KO"].qty, saturday.positions()["KO"].qty_available) == (10, 4)
    with pytest.raises(OrderRefused, match=r"requested: 5, available: 4"):
        saturday.submit(OrderRequest("KO", "sell", 5, client_order_id="sell-5"))
    assert saturday.account().buying_power == before.buying_power  # no proceeds before the sell fills
    ko = close_on(prices, "KO", "2022-06-03")
    affordable = int(before.buying_power // ko)
    saturday.submit(OrderRequest("KO", "buy", affordable, client_order_id="buy-max"))
    assert saturday.account().buying_power == pytest.approx(before.buying_power - affordable * ko)
    with pytest.raises(OrderRefused, match="insufficient buying power"):
        saturday.submit(OrderRequest("KO", "buy", 1, client_order_id="buy-one-more"))


def test_orders_since_lists_every_status_oldest_first(tmp_path, prices):
    path = tmp_path / "p.sqlite"
    friday = dt.datetime(2022, 6, 3, 15, 0, tzinfo=NEW_YORK)
    PaperBroker(path, prices, now=friday).submit(OrderRequest("KO", "buy", 1, client_order_id="fri"))
    saturday = PaperBroker(path, prices, now=dt.datetime(2022, 6, 4, 10, 0, tzinfo=NEW_YORK))
    doomed = saturday.submit(OrderRequest("PG", "buy", 1, client_order_id="sat"))
    saturday.cancel(doomed.id)
    listed = saturday.orders_since(friday - dt.timedelta(seconds=1))
    assert [(o.client_order_id, o.status) for o in listed] == [("fri", "filled"), ("sat", "canceled")]
    assert [o.client_order_id for o in saturday.orders_since(friday)] == ["sat"]  # after is exclusive
    with pytest.raises(BrokerError, match="timezone-aware"):
        saturday.orders_since(dt.datetime(2022, 6, 1))


def test_orders_placed_while_closed_stay_open_fill_later_and_can_be_cancelled(tmp_path, prices):
    path = tmp_path / "p.sqlite"
    saturday = dt.datetime(2022, 6, 4, 10, 0, tzinfo=NEW_YORK)
    closed = PaperBroker(path, prices, now=saturday)
    queued = closed.submit(OrderRequest("KO", "buy", 3, client_order_id="q1"))
    doomed = closed.submit(OrderRequest("PG", "buy", 2, client_order_id="q2"))
    assert queued.status == "accepted" and queued.is_open
    assert {o.client_order_id for o in closed.open_orders()} == {"q1", "q2"}
    closed.cancel(doomed.id)
    with pytest.raises(BrokerError):
        closed.cancel(doomed.id)  # no longer open

    monday = PaperBroker(path, prices, now=dt.datetime(2022, 6, 6, 9, 31, tzinfo=NEW_YORK))
    assert monday.positions()["KO"].qty == 3
    assert "PG" not in monday.positions()
    filled = monday.order_by_client_id("q1")
    assert (filled.status, filled.filled_avg_price) == ("filled", close_on(prices, "KO", "2022-06-06"))
    assert monday.open_orders() == []


def test_concurrent_submissions_of_one_id_make_exactly_one_order(tmp_path, prices):
    path = tmp_path / "p.sqlite"
    PaperBroker(path, prices, now=OPEN_MOMENT)  # create the file first
    outcomes: list[str] = []

    def worker() -> None:
        broker = PaperBroker(path, prices, now=OPEN_MOMENT)  # its own connections, as a separate process has
        try:
            broker.submit(OrderRequest("KO", "buy", 1, client_order_id="race"))
            outcomes.append("submitted")
        except DuplicateOrderError:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 5 + ["submitted"]
    assert PaperBroker(path, prices, now=OPEN_MOMENT).positions()["KO"].qty == 1


def test_two_processes_share_one_database(tmp_path):
    path = tmp_path / "p.sqlite"
    code = (
        "import datetime as dt, sys\n"
        "from brokers.paper import PaperBroker\nfrom brokers.calendar import NEW_YORK\n"
        "from brokers.base import OrderRequest, DuplicateOrderError\nfrom marketdata.provider import SampleProvider\n"
        "b = PaperBroker(sys.argv[1], SampleProvider(), now=dt.datetime(2022, 6, 1, 15, 45, tzinfo=NEW_YORK))\n"
        "try:\n    b.submit(OrderRequest('PG', 'buy', 2, client_order_id='proc')); print('submitted')\n"
        "except DuplicateOrderError:\n    print('duplicate')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["duplicate", "submitted"]


def test_calendar_holidays_weekends_early_closes_and_daylight_saving():
    cal = MarketCalendar()
    assert cal.session(dt.date(2022, 7, 4)) is None
    assert cal.session(dt.date(2022, 6, 4)) is None  # Saturday
    early = cal.session(dt.date(2022, 11, 25))
    assert (early.open.strftime("%H:%M"), early.close.strftime("%H:%M")) == ("09:30", "13:00")
    for day in (dt.date(2022, 3, 11), dt.date(2022, 3, 14), dt.date(2022, 11, 4), dt.date(2022, 11, 7)):
        session = cal.session(day)
        assert session.open.strftime("%H:%M") == "09:30", day
    # the UTC hour of the open moves with daylight saving time
    assert cal.session(dt.date(2022, 3, 11)).open.astimezone(dt.timezone.utc).hour == 14
    assert cal.session(dt.date(2022, 3, 14)).open.astimezone(dt.timezone.utc).hour == 13
    assert cal.session(dt.date(2022, 11, 7)).open.astimezone(dt.timezone.utc).hour == 14
    assert cal.previous_session(dt.date(2022, 7, 5)) == dt.date(2022, 7, 1)


def test_clock():
    cal = MarketCalendar()
    holiday = cal.clock(dt.datetime(2022, 7, 4, 12, 0, tzinfo=NEW_YORK))
    assert not holiday.is_open and holiday.next_open.isoformat() == "2022-07-05T09:30:00-04:00"
    after_early_close = cal.clock(dt.datetime(2022, 11, 25, 13, 30, tzinfo=NEW_YORK))
    assert not after_early_close.is_open
    assert cal.clock(dt.datetime(2022, 11, 25, 12, 59, tzinfo=NEW_YORK)).is_open
    before_open = cal.clock(dt.datetime(2022, 3, 14, 13, 29, tzinfo=dt.timezone.utc))  # 09:29 EDT
    at_open = cal.clock(dt.datetime(2022, 3, 14, 13, 30, tzinfo=dt.timezone.utc))
    assert (before_open.is_open, at_open.is_open) == (False, True)
    assert before_open.next_open == at_open.now


# -- the execution model at the strategy's bars -------------------------------------------------------------------

def _bars_csv(tmp_path):
    """SYNTHETIC 15-minute bars (examples/synthetic_intraday.py) as a CSV file, and its frame."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from synthetic_intraday import synthetic_frame

    frame = synthetic_frame("2022-05-23", "2022-05-25", bar="15m").round(4)
    path = tmp_path / "bars15.csv"
    frame.to_csv(path, index_label="timestamp")
    return path, frame


def test_on_15_minute_bars_it_fills_at_the_open_of_the_bar_at_the_moment_through_the_model(tmp_path):
    """MARKET_DATA=csv:<15m file> used to refuse every order ("has 15m bars, not 1d")."""
    from marketdata.provider import CsvProvider
    from strategies.execution import Costs, Execution

    path, frame = _bars_csv(tmp_path)
    bars = frame.reset_index().set_index(["timestamp", "symbol"])
    model = Execution(costs=Costs(slippage_bps=5.0))
    at = dt.datetime(2022, 5, 24, 10, 0, tzinfo=NEW_YORK)
    broker = PaperBroker(tmp_path / "p.sqlite", CsvProvider(str(path)), now=at, execution=model, bar="15m")
    bought = broker.submit(OrderRequest("AAA", "buy", 100, client_order_id="b1"))
    open_ = bars.at[(pd.Timestamp("2022-05-24 10:00"), "AAA"), "open"]
    assert bought.status == "filled" and bought.filled_avg_price == pytest.approx(open_ * 1.0005)
    # valued at the last complete bar's close (09:45 bar), as the backtest's equity at the 10:00 slot
    last_close = bars.at[(pd.Timestamp("2022-05-24 09:45"), "AAA"), "close"]
    account = broker.account()
    assert account.equity == pytest.approx(account.cash + 100 * last_close)
    # mid-bar: the bar in progress (10:15 to 10:30) prices the sell; its fees are Alpaca's, paid from the proceeds
    later = PaperBroker(tmp_path / "p.sqlite", CsvProvider(str(path)), now=at + dt.timedelta(minutes=22),
                        execution=model, bar="15m")
    sold = later.submit(OrderRequest("AAA", "sell", 100, client_order_id="s1"))
    price = bars.at[(pd.Timestamp("2022-05-24 10:15"), "AAA"), "open"] * 0.9995
    assert sold.filled_avg_price == pytest.approx(price)
    fee = model.costs.fees("sell", 100, sold.filled_avg_price, at.date())
    assert fee > 0
    assert later.account().cash == pytest.approx(account.cash + 100 * price - fee)


def test_on_alpaca_15_minute_data_the_moment_without_a_bar_in_progress_uses_the_last_close(tmp_path):
    """Alpaca serves a bar once it is complete: at a slot the bar that opens then is not there yet."""
    from _alpaca_data_stub import alpaca_data_stub
    from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider

    with alpaca_data_stub() as stub:
        slot = dt.datetime(2024, 7, 2, 10, 0, tzinfo=NEW_YORK)
        stub.state.now = slot
        provider = AlpacaDataProvider(AlpacaDataConfig(stub.key_id, stub.secret, url=stub.url), cache_dir=tmp_path,
                                      now=lambda: stub.state.now)
        broker = PaperBroker(tmp_path / "p.sqlite", provider, now=slot, bar="15m")
        order = broker.submit(OrderRequest("AAPL", "buy", 3, client_order_id="a1"))
        last = provider.history(["AAPL"], end=slot, bars=1, interval="15m")
    assert last.closes.index[-1] == pd.Timestamp("2024-07-02 09:45")
    assert order.status == "filled" and order.filled_avg_price == pytest.approx(float(last.closes["AAPL"].iloc[-1]))


class _CountingProvider:
    """The bundled sample, counting the reads the broker makes of it."""

    def __init__(self, inner) -> None:
        self.inner, self.reads = inner, []
        self.name = inner.name

    def history(self, symbols, **kwargs):
        self.reads.append(list(symbols))
        return self.inner.history(symbols, **kwargs)


def test_account_marks_every_holding_from_one_read_of_the_data(tmp_path, prices):
    path = tmp_path / "paper.sqlite"
    buyer = PaperBroker(path, prices, now=OPEN_MOMENT, cash=50_000.0)
    for symbol, qty in (("KO", 10), ("PG", 5), ("AAPL", 3)):
        buyer.submit(OrderRequest(symbol, "buy", qty, client_order_id=f"t-{symbol}"))
    later = dt.datetime(2022, 6, 8, 11, 0, tzinfo=NEW_YORK)
    counted = _CountingProvider(prices)
    broker = PaperBroker(path, counted, now=later)
    first, second = broker.account(), broker.account()
    assert counted.reads == [["AAPL", "KO", "PG"]]  # one read for three holdings and two account reads
    held = 10 * close_on(prices, "KO", "2022-06-08") + 5 * close_on(prices, "PG", "2022-06-08") \
        + 3 * close_on(prices, "AAPL", "2022-06-08")
    assert first == second
    assert first.equity == pytest.approx(first.cash + held, abs=1e-9)
    # the marks are each holding's own price, as one read per symbol gave them
    assert first.equity - first.cash == pytest.approx(sum(
        q * broker.price(s) for s, q in (("KO", 10), ("PG", 5), ("AAPL", 3))), abs=1e-9)
