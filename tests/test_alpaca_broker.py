"""Contract tests of AlpacaBroker: the real alpaca-py client against the loopback Alpaca stub, and against
Alpaca's paper API too when APCA_API_KEY_ID and APCA_API_SECRET_KEY are set (skipped otherwise)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import traceback
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from brokers.alpaca import AlpacaBroker
from brokers.base import BrokerError, BrokerOrder, DuplicateOrderError, OrderRequest
from tests._alpaca_stub import AlpacaStub, alpaca_stub

ET_NAME = "America/New_York"
# captured at import, before the suite's loopback guard patches connect for each test
_REAL_CONNECT = socket.socket.connect


@dataclass
class Target:
    broker: AlpacaBroker
    key_id: str
    secret: str
    url: str | None
    stub: AlpacaStub | None
    prefix: str
    symbol: str

    def cid(self, name: str) -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture(params=["stub", "alpaca-paper"])
def target(request, monkeypatch):
    prefix = f"pt-contract-{uuid.uuid4().hex[:10]}"
    if request.param == "stub":
        with alpaca_stub() as stub:
            stub.state.prices.update({"AAPL": 150.0, "F": 12.0})
            yield Target(AlpacaBroker(stub.key_id, stub.secret, url=stub.url), stub.key_id, stub.secret, stub.url,
                         stub, prefix, "F")
        return
    key, secret = os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY")
    if not (key and secret):
        pytest.skip("APCA_API_KEY_ID and APCA_API_SECRET_KEY not set: contract tests against Alpaca's paper API skipped")
    if os.environ.get("APCA_PAPER", "true").strip().lower() in ("0", "false", "no", "off"):
        pytest.skip("APCA_PAPER is false: contract tests never run against a live-money account")
    monkeypatch.setattr(socket.socket, "connect", _REAL_CONNECT)  # this target is the internet, on purpose
    broker = AlpacaBroker(key, secret, paper=True)
    yield Target(broker, key, secret, None, None, prefix, "F")
    try:  # leave the paper account as found, as far as orders go
        for order in broker.open_orders():
            if order.client_order_id.startswith(prefix):
                broker.cancel(order.id)
    except BrokerError:
        pass


@pytest.fixture
def stub():
    with alpaca_stub() as s:
        s.state.prices.update({"AAPL": 150.0, "MSFT": 250.0})
        yield s


def _broker(stub: AlpacaStub, **kw) -> AlpacaBroker:
    return AlpacaBroker(stub.key_id, stub.secret, url=stub.url, **kw)


def _assert_clean(err: BaseException, *secrets: str) -> None:
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    assert "\n" not in str(err)
    for s in secrets:
        assert s not in text


# ---- the contract, against the stub and (with keys) Alpaca's paper API --------------------------------------

def test_account_reports_money(target):
    acct = target.broker.account()
    assert acct.currency == "USD"
    assert acct.equity >= 0 and acct.buying_power >= 0
    assert all(isinstance(x, float) for x in (acct.cash, acct.buying_power, acct.equity))
    if target.stub:
        assert acct.cash == acct.equity == 100_000.0


def test_clock_is_new_york_time_and_consistent(target):
    c = target.broker.clock()
    for t in (c.now, c.next_open, c.next_close):
        assert str(t.tzinfo) == ET_NAME
    assert c.next_close > c.now
    assert c.next_open > c.now
    # open: today's close comes before tomorrow's open; closed: the next open comes before its close
    assert (c.next_close < c.next_open) == c.is_open


def test_calendar_skips_holidays_and_knows_early_closes(target):
    days = target.broker.calendar(dt.date(2022, 7, 1), dt.date(2022, 7, 6))
    assert [s.date for s in days] == [dt.date(2022, 7, 1), dt.date(2022, 7, 5), dt.date(2022, 7, 6)]
    first = days[0]
    assert str(first.open.tzinfo) == ET_NAME
    assert (first.open.hour, first.open.minute, first.close.hour) == (9, 30, 16)
    (black_friday,) = target.broker.calendar(dt.date(2022, 11, 25), dt.date(2022, 11, 25))
    assert black_friday.close == dt.datetime(2022, 11, 25, 13, 0, tzinfo=black_friday.close.tzinfo)


def test_positions_are_whole_shares_by_symbol(target):
    if target.stub:
        target.stub.state.set_position("AAPL", 5, 100.0, price=120.0)
    positions = target.broker.positions()
    for sym, p in positions.items():
        assert p.symbol == sym and isinstance(p.qty, int) and p.avg_entry_price > 0
    if target.stub:
        assert positions["AAPL"].qty == 5
        assert positions["AAPL"].avg_entry_price == 100.0
        assert positions["AAPL"].market_value == 600.0


def test_market_order_goes_out_as_day_market_with_client_id(target):
    order = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("mkt")))
    assert isinstance(order, BrokerOrder)
    assert (order.client_order_id, order.symbol, order.side, order.qty) == (target.cid("mkt"), target.symbol, "buy", 1)
    assert order.order_type == "market"
    assert order.status in {"new", "accepted", "pending_new", "filled", "partially_filled"}
    assert str(order.submitted_at.tzinfo) == ET_NAME
    if target.stub:
        (body,) = target.stub.state.submitted()
        assert body["type"] == "market" and body["time_in_force"] == "day"
        assert float(body["qty"]) == 1 and body["client_order_id"] == target.cid("mkt")
        assert "order_class" not in body and "take_profit" not in body


def test_bracket_order_carries_both_exits(target):
    req = OrderRequest(target.symbol, "buy", 1, target.cid("bracket"), stop_loss_price=1.004, take_profit_price=1000.0)
    order = target.broker.submit(req)
    assert order.client_order_id == target.cid("bracket") and order.order_type == "market"
    legs = [o for o in target.broker.open_orders() if o.symbol == target.symbol and o.side == "sell"
            and o.order_type in ("limit", "stop")]
    assert {o.order_type for o in legs} == {"limit", "stop"}
    if target.stub:
        (body,) = target.stub.state.submitted()
        assert body["order_class"] == "bracket" and body["time_in_force"] == "gtc"
        assert body["take_profit"] == {"limit_price": 1000.0}
        assert body["stop_loss"] == {"stop_price": 1.0}  # rounded to the cent Alpaca accepts


def test_reused_client_order_id_is_a_duplicate(target):
    first = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("dup")))
    with pytest.raises(DuplicateOrderError) as err:
        target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("dup")))
    _assert_clean(err.value, target.secret)
    assert target.broker.order_by_client_id(target.cid("dup")).id == first.id
    if target.stub:
        assert len(target.stub.state.submitted()) == 2 and len(target.stub.state.orders) == 1


def test_order_by_client_id_found_and_not_found(target):
    placed = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("find")))
    found = target.broker.order_by_client_id(target.cid("find"))
    assert found is not None
    assert (found.id, found.symbol, found.side, found.qty) == (placed.id, target.symbol, "buy", 1)
    assert target.broker.order_by_client_id(target.cid("never-sent")) is None


def test_open_orders_lists_what_is_working(target):
    placed = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("open")))
    now = target.broker.order_by_client_id(target.cid("open"))
    ids = {o.id for o in target.broker.open_orders()}
    if now.is_open:
        assert placed.id in ids
    else:
        assert placed.id not in ids
    assert all(o.is_open for o in target.broker.open_orders())


def test_cancel_takes_an_order_off_the_book(target):
    placed = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("cancel")))
    if not target.broker.order_by_client_id(target.cid("cancel")).is_open:
        pytest.skip("the paper order filled before it could be cancelled (market open)")
    target.broker.cancel(placed.id)
    after = target.broker.order_by_client_id(target.cid("cancel"))
    assert after.status in ("canceled", "pending_cancel")
    assert placed.id not in {o.id for o in target.broker.open_orders() if o.status != "pending_cancel"}


def test_wrong_secret_is_a_broker_error_that_does_not_leak_it(target):
    wrong = "wrong-secret-" + uuid.uuid4().hex
    bad = AlpacaBroker(target.key_id, wrong, paper=True, url=target.url)
    with pytest.raises(BrokerError) as err:
        bad.account()
    assert not isinstance(err.value, DuplicateOrderError)
    assert "HTTP 40" in str(err.value)
    _assert_clean(err.value, wrong, target.secret)


# ---- stub only: order shapes, faults, configuration ----------------------------------------------------------

def test_one_exit_goes_as_oto_and_a_sell_never_carries_exits(stub):
    broker = _broker(stub)
    stub.state.set_position("MSFT", 4, 200.0)
    broker.submit(OrderRequest("AAPL", "buy", 2, "oto-1", stop_loss_price=141.999))
    broker.submit(OrderRequest("MSFT", "sell", 4, "sell-1", stop_loss_price=190.0, take_profit_price=300.0))
    oto, sell = stub.state.submitted()
    assert oto["order_class"] == "oto" and oto["stop_loss"] == {"stop_price": 142.0} and "take_profit" not in oto
    assert "order_class" not in sell and "stop_loss" not in sell and sell["time_in_force"] == "day"


def test_bracket_exits_can_be_kept_for_the_day_only(stub):
    _broker(stub, bracket_time_in_force="day").submit(
        OrderRequest("AAPL", "buy", 1, "b-day", stop_loss_price=140.0, take_profit_price=160.0))
    assert stub.state.submitted()[0]["time_in_force"] == "day"


def test_filled_bracket_leaves_its_exits_working_and_a_position(stub):
    stub.state.fill_market_orders = True
    broker = _broker(stub)
    order = broker.submit(OrderRequest("AAPL", "buy", 10, "b-fill", stop_loss_price=147.0, take_profit_price=210.0))
    assert (order.status, order.filled_qty, order.filled_avg_price) == ("filled", 10, 150.0)
    assert broker.positions()["AAPL"].qty == 10
    assert broker.account().cash == 100_000.0 - 1500.0
    exits = {o.order_type: o.status for o in broker.open_orders()}
    assert exits == {"limit": "new", "stop": "held"}


def test_numpy_whole_quantities_are_accepted_and_bad_ones_refused_before_sending(stub):
    broker = _broker(stub)
    assert broker.submit(OrderRequest("AAPL", "buy", np.int64(2), "np-1")).qty == 2
    for qty in (0, -3, 1.5, True):
        with pytest.raises(BrokerError, match="positive whole number"):
            broker.submit(OrderRequest("AAPL", "buy", qty, f"bad-{qty}"))
    assert len(stub.state.submitted()) == 1


def test_refused_order_is_a_broker_error_not_a_duplicate(stub):
    with pytest.raises(BrokerError) as err:
        _broker(stub).submit(OrderRequest("AAPL", "buy", 10_000, "too-big"))
    assert not isinstance(err.value, DuplicateOrderError)
    assert "HTTP 403: insufficient buying power" in str(err.value)


def test_order_taken_but_answer_lost_returns_the_order(stub):
    stub.state.fail("POST", "/v2/orders", status=None, commit=True)
    order = _broker(stub).submit(OrderRequest("AAPL", "buy", 1, "lost-1"))
    assert order.client_order_id == "lost-1"
    assert len(stub.state.orders) == 1


def test_failure_after_first_submission_then_a_retry_places_each_order_once(stub):
    broker = _broker(stub)
    stub.state.fail("POST", "/v2/orders", status=None, after=1)  # 2nd submission dropped before the broker took it
    broker.submit(OrderRequest("AAPL", "buy", 1, "cyc-AAPL"))
    with pytest.raises(BrokerError, match="ConnectionError") as err:
        broker.submit(OrderRequest("MSFT", "buy", 1, "cyc-MSFT"))
    _assert_clean(err.value, stub.secret)
    for sym in ("AAPL", "MSFT"):  # the retried cycle: look up first, submit only what is missing
        if broker.order_by_client_id(f"cyc-{sym}") is None:
            broker.submit(OrderRequest(sym, "buy", 1, f"cyc-{sym}"))
    assert sorted(o["client_order_id"] for o in stub.state.orders) == ["cyc-AAPL", "cyc-MSFT"]


def test_server_error_is_reported_with_its_status(stub):
    stub.state.fail("GET", "/v2/positions", status=500)
    with pytest.raises(BrokerError, match=r"alpaca positions failed: HTTP 500: internal server error"):
        _broker(stub).positions()


def test_secret_echoed_by_a_server_or_proxy_is_masked(stub):
    stub.state.fail("GET", "/v2/account", status=400, body={"code": 1, "message": f"bad header {stub.secret}"})
    stub.state.fail("GET", "/v2/clock", status=502, body={"html": f"<html><body>\n{stub.secret}\n</body></html>"})
    broker = _broker(stub)
    for call in (broker.account, broker.clock):
        with pytest.raises(BrokerError) as err:
            call()
        _assert_clean(err.value, stub.secret)
        assert "***" in str(err.value)


def test_unreachable_server_and_hung_server_are_broker_errors(stub):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = AlpacaBroker(stub.key_id, stub.secret, url=f"http://127.0.0.1:{port}")
    with pytest.raises(BrokerError, match="ConnectionError talking to 127.0.0.1") as err:
        dead.clock()
    _assert_clean(err.value, stub.secret)
    slow = stub.state.fail("GET", "/v2/clock", status=200, delay=0.6, times=2)
    with pytest.raises(BrokerError, match="Timeout"):
        _broker(stub, timeout=0.2).clock()
    assert _broker(stub, timeout=5).clock().is_open  # slow but within the timeout: a normal answer
    assert slow.seen == 2


def test_stub_clock_follows_holidays_weekends_and_early_closes(stub):
    broker = _broker(stub)
    stub.state.set_now("2022-07-04T12:00:00-04:00")
    c = broker.clock()
    assert not c.is_open and c.next_open == dt.datetime(2022, 7, 5, 9, 30, tzinfo=c.now.tzinfo)
    stub.state.set_now("2022-07-09T12:00:00-04:00")  # Saturday
    assert not broker.clock().is_open
    stub.state.set_now("2022-11-25T12:30:00-05:00")
    c = broker.clock()
    assert c.is_open and c.next_close == dt.datetime(2022, 11, 25, 13, 0, tzinfo=c.now.tzinfo)
    stub.state.set_now("2022-11-25T13:30:00-05:00")
    assert not broker.clock().is_open


def test_from_env_reads_keys_paper_flag_and_url(stub, monkeypatch):
    for k, v in stub.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("APCA_API_BASE_URL", stub.url + "/v2/")
    broker = AlpacaBroker.from_env()
    assert broker.name == "alpaca-paper" and broker.url == stub.url
    assert broker.account().cash == 100_000.0
    assert stub.state.received[-1].authorized
    live = AlpacaBroker.from_env({**stub.env(), "APCA_PAPER": "false", "APCA_API_BASE_URL": ""})
    assert live.name == "alpaca-live" and "https://api.alpaca.markets" in repr(live)
    assert "https://paper-api.alpaca.markets" in repr(AlpacaBroker.from_env({**stub.env(), "APCA_API_BASE_URL": ""}))


@pytest.mark.parametrize("env, message", [
    ({}, "missing APCA_API_KEY_ID and APCA_API_SECRET_KEY"),
    ({"APCA_API_KEY_ID": "PK1", "APCA_API_SECRET_KEY": "  "}, "missing APCA_API_SECRET_KEY"),
    ({"APCA_API_KEY_ID": "PK1", "APCA_API_SECRET_KEY": "s", "APCA_PAPER": "maybe"}, "APCA_PAPER must be true or false"),
    ({"APCA_API_KEY_ID": "PK1", "APCA_API_SECRET_KEY": "s", "APCA_API_BASE_URL": "https://api.alpaca.markets"},
     "points at the live endpoint but APCA_PAPER is true"),
    ({"APCA_API_KEY_ID": "PK1", "APCA_API_SECRET_KEY": "s", "APCA_PAPER": "no",
      "APCA_API_BASE_URL": "https://paper-api.alpaca.markets"}, "points at the paper endpoint but APCA_PAPER is false"),
])
def test_from_env_refuses_bad_configuration(env, message):
    with pytest.raises(BrokerError, match=message):
        AlpacaBroker.from_env(env)
