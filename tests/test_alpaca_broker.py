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
import requests

import brokers.alpaca
from brokers.base import BrokerError, BrokerOrder, DuplicateOrderError, OrderRefused, OrderRequest
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
        assert positions["AAPL"].qty_available == 5


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


def test_client_order_id_over_48_characters_is_refused_before_sending(target):
    long_id = target.cid("x" * 48)[:49]
    with pytest.raises(OrderRefused, match="1 to 48 characters"):
        target.broker.submit(OrderRequest(target.symbol, "buy", 1, long_id))
    assert target.broker.order_by_client_id(long_id) is None
    if target.stub:
        assert target.stub.state.submitted() == []


def test_orders_since_lists_every_status_oldest_first(target):
    since = target.broker.clock().now - dt.timedelta(minutes=5)
    first = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("since-1")))
    second = target.broker.submit(OrderRequest(target.symbol, "buy", 1, target.cid("since-2")))
    target.broker.cancel(first.id)
    mine = [o for o in target.broker.orders_since(since) if o.client_order_id.startswith(target.prefix)]
    assert [o.id for o in mine] == [first.id, second.id]


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


# ---- stub only: Alpaca's strictness (issue 11, item 10) and the broker under it -----------------------------

def test_shares_held_for_open_sells_and_bracket_exits_cannot_be_sold_again(stub):
    broker = _broker(stub)
    stub.state.set_position("MSFT", 10, 200.0)
    broker.submit(OrderRequest("MSFT", "sell", 6, "sell-6"))  # stays open: the stub does not fill it
    assert (broker.positions()["MSFT"].qty, broker.positions()["MSFT"].qty_available) == (10, 4)
    with pytest.raises(OrderRefused) as err:
        broker.submit(OrderRequest("MSFT", "sell", 5, "sell-5"))
    assert err.value.status == 403
    assert err.value.reason == "insufficient qty available for order (requested: 5, available: 4)"
    broker.submit(OrderRequest("MSFT", "sell", 4, "sell-4"))  # exactly what is available

    stub.state.fill_market_orders = True
    broker.submit(OrderRequest("AAPL", "buy", 10, "b-exits", stop_loss_price=140.0, take_profit_price=170.0))
    assert broker.positions()["AAPL"].qty_available == 0  # both exits hold the same 10 shares, once
    with pytest.raises(OrderRefused, match="requested: 1, available: 0"):
        broker.submit(OrderRequest("AAPL", "sell", 1, "sell-aapl"))


def test_a_cancel_is_pending_until_alpaca_confirms_it_and_keeps_its_reservation(stub):
    stub.state.cancel_delay = None  # confirmed only when the clock moves
    broker = _broker(stub)
    stub.state.set_position("MSFT", 10, 200.0)
    sell = broker.submit(OrderRequest("MSFT", "sell", 10, "sell-all"))
    broker.cancel(sell.id)
    assert broker.order_by_client_id("sell-all").status == "pending_cancel"
    assert sell.id in {o.id for o in broker.open_orders()}
    assert broker.positions()["MSFT"].qty_available == 0
    with pytest.raises(OrderRefused, match="available: 0"):
        broker.submit(OrderRequest("MSFT", "sell", 10, "sell-again"))
    broker.cancel(sell.id)  # already going: done, not an error
    stub.state.set_now(stub.state.now + dt.timedelta(seconds=1))
    assert broker.order_by_client_id("sell-all").status == "canceled"
    assert broker.positions()["MSFT"].qty_available == 10
    stub.state.fill_market_orders = True
    filled = broker.submit(OrderRequest("MSFT", "sell", 1, "sell-one"))
    with pytest.raises(BrokerError, match='HTTP 422: order is already in "filled" state'):
        broker.cancel(filled.id)  # a filled order cannot be cancelled: that one is an error


def test_a_cancel_is_confirmed_after_the_configured_number_of_requests(stub):
    stub.state.cancel_delay = 2
    broker = _broker(stub)
    buy = broker.submit(OrderRequest("AAPL", "buy", 1, "buy-1"))
    broker.cancel(buy.id)
    statuses = [broker.order_by_client_id("buy-1").status for _ in range(3)]
    assert statuses == ["pending_cancel", "pending_cancel", "canceled"]


def test_buying_power_counts_open_buys_and_not_proceeds_of_unfilled_sells(stub):
    broker = _broker(stub)
    broker.submit(OrderRequest("AAPL", "buy", 600, "big-buy"))  # 90,000 reserved at the current 150
    account = broker.account()
    assert (account.cash, account.buying_power) == (100_000.0, 10_000.0)
    with pytest.raises(OrderRefused) as err:
        broker.submit(OrderRequest("AAPL", "buy", 100, "one-more"))
    assert (err.value.status, err.value.reason) == (403, "insufficient buying power")

    stub.state.set_position("MSFT", 100, 200.0, price=250.0)
    sell = broker.submit(OrderRequest("MSFT", "sell", 100, "sell-msft"))  # 25,000 once it fills
    assert broker.account().buying_power == 10_000.0
    with pytest.raises(OrderRefused, match="insufficient buying power"):
        broker.submit(OrderRequest("AAPL", "buy", 100, "with-proceeds"))
    stub.state.fill(sell.id)
    assert broker.account().buying_power == 35_000.0
    assert broker.submit(OrderRequest("AAPL", "buy", 100, "with-proceeds")).qty == 100


def test_the_stub_refuses_a_client_order_id_over_48_characters_as_alpaca_does(stub):
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    post = lambda cid: requests.post(stub.url + "/v2/orders", json={**body, "client_order_id": cid},
                                     headers=stub.headers(), timeout=5)
    refused = post("x" * 49)
    assert refused.status_code == 422
    assert refused.json()["message"] == "client_order_id must be no more than 48 characters"
    assert post("x" * 48).status_code == 200


def test_an_order_taken_before_a_504_and_resent_by_alpaca_py_is_reported_as_ours(stub):
    broker = _broker(stub, retry_wait=0)
    lost = stub.state.fail("POST", "/v2/orders", status=504, commit=True)
    order = broker.submit(OrderRequest("AAPL", "buy", 3, "resent-1"))
    assert lost.seen == 1 and len(stub.state.submitted()) == 2  # alpaca-py resent it by itself ...
    assert [o["client_order_id"] for o in stub.state.orders] == ["resent-1"]  # ... and Alpaca kept one
    assert (order.client_order_id, order.symbol, order.side, order.qty) == ("resent-1", "AAPL", "buy", 3)
    assert order.id == stub.state.orders[0]["id"]


def test_a_genuinely_reused_id_stays_a_duplicate_even_after_a_resend(stub):
    broker = _broker(stub, retry_wait=0)
    broker.submit(OrderRequest("AAPL", "buy", 1, "taken"))
    with pytest.raises(DuplicateOrderError):  # first answer already says so: not ours
        broker.submit(OrderRequest("AAPL", "buy", 1, "taken"))
    stub.state.fail("POST", "/v2/orders", status=504)  # not taken; the resend meets the older order
    with pytest.raises(DuplicateOrderError):  # a different order under that id: someone else's
        broker.submit(OrderRequest("AAPL", "buy", 2, "taken"))


@pytest.mark.parametrize("kind, status, reason", [
    ("untradable", 422, "asset AAPL is not tradable"),
    ("unknown", 422, 'asset "AAPL" not found'),
    ("halted", 403, "trading is halted for AAPL"),
])
def test_an_untradable_unknown_or_halted_symbol_is_a_refusal_of_that_order(stub, kind, status, reason):
    getattr(stub.state, kind).add("AAPL")
    broker = _broker(stub)
    with pytest.raises(OrderRefused) as err:
        broker.submit(OrderRequest("AAPL", "buy", 1, f"{kind}-1"))
    assert (err.value.status, err.value.reason) == (status, reason)
    assert reason in str(err.value) and "submit buy 1 AAPL" in str(err.value)
    assert broker.submit(OrderRequest("MSFT", "buy", 1, f"{kind}-2")).symbol == "MSFT"  # the others go on


def test_account_level_refusals_stay_broker_errors(stub):
    stub.state.fail("POST", "/v2/orders", status=403, body={"code": 40310000, "message": "forbidden."})
    with pytest.raises(BrokerError) as err:
        _broker(stub).submit(OrderRequest("AAPL", "buy", 1, "forbidden-1"))
    assert not isinstance(err.value, OrderRefused)
    stub.state.fail("POST", "/v2/orders", status=500)
    with pytest.raises(BrokerError) as err:
        _broker(stub).submit(OrderRequest("AAPL", "buy", 1, "server-1"))
    assert not isinstance(err.value, OrderRefused)
    with pytest.raises(BrokerError) as err:
        AlpacaBroker(stub.key_id, "wrong", url=stub.url).submit(OrderRequest("AAPL", "buy", 1, "auth-1"))
    assert not isinstance(err.value, OrderRefused) and "HTTP 401" in str(err.value)


def test_orders_since_pages_through_everything_with_bracket_legs_nested(stub, monkeypatch):
    monkeypatch.setattr(brokers.alpaca, "PAGE_SIZE", 2)
    broker = _broker(stub)
    since = broker.clock().now - dt.timedelta(seconds=1)
    stub.state.fill_market_orders = True
    ids = [broker.submit(OrderRequest("AAPL", "buy", 1, f"p-{i}")).id for i in range(3)]
    bracket = broker.submit(OrderRequest("MSFT", "buy", 2, "p-bracket", stop_loss_price=240.0, take_profit_price=300.0))
    stub.state.fill_market_orders = False
    ids += [bracket.id, broker.submit(OrderRequest("AAPL", "buy", 1, "p-open")).id]
    broker.cancel(ids[-1])
    listed = broker.orders_since(since)
    assert [o.id for o in listed] == ids
    assert [o.status for o in listed][:4] == ["filled"] * 4 and listed[-1].status in ("pending_cancel", "canceled")
    legs = listed[3].legs
    assert sorted(leg.order_type for leg in legs) == ["limit", "stop"] and all(leg.side == "sell" for leg in legs)
    pages = [r for r in stub.state.received if r.method == "GET" and r.path == "/v2/orders"]
    assert len(pages) == 3 and all(r.query["status"] == "all" and r.query["nested"].lower() == "true" for r in pages)
    assert broker.orders_since(broker.clock().now + dt.timedelta(seconds=1)) == []


def test_a_filled_order_carries_alpacas_fee_as_an_estimate(stub):
    # Alpaca's order objects carry no fee (its regulatory fees are booked later as account activities): the broker
    # gives the costs model's estimate of them, marked as such; nothing before a fill, nothing on a buy
    from strategies.execution import Costs

    stub.state.fill_market_orders = True
    broker = _broker(stub)
    stub.state.set_position("MSFT", 4000, 200.0)
    buy = broker.submit(OrderRequest("AAPL", "buy", 10, "fee-buy"))
    sell = broker.submit(OrderRequest("MSFT", "sell", 4000, "fee-sell"))
    assert (buy.fee, buy.fee_estimated) == (0.0, True)
    day = broker.order_by_client_id("fee-sell").submitted_at.date()
    expected = Costs(slippage_bps=0.0, regulatory="alpaca").fees("sell", 4000, sell.filled_avg_price, day)
    assert sell.fee_estimated and sell.fee == pytest.approx(expected) and sell.fee >= 0.01  # the TAF at least
    stub.state.fill_market_orders = False
    pending = broker.submit(OrderRequest("AAPL", "buy", 1, "fee-open"))
    assert (pending.fee, pending.fee_estimated) == (None, False)
