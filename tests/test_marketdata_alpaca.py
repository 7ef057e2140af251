"""Alpaca's market data API against its loopback stand-in (tests/_alpaca_data_stub.py), driven by the real alpaca-py
``StockHistoricalDataClient``. The bars are synthetic (a seeded random walk), never real prices."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from _alpaca_data_stub import alpaca_data_stub
from marketdata import DataError, open_provider
from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider, RetryPolicy
from marketdata.bars import outside_session

JUL1, JUL3 = dt.date(2024, 7, 1), dt.date(2024, 7, 3)  # 2024-07-03 closes early, at 13:00


@pytest.fixture()
def stub():
    with alpaca_data_stub() as running:
        yield running


def _provider(stub, tmp_path, waits=None, **config) -> AlpacaDataProvider:
    sleeps = waits if waits is not None else []
    return AlpacaDataProvider(AlpacaDataConfig(stub.key_id, stub.secret, url=stub.url, **config), cache_dir=tmp_path,
                              sleep=sleeps.append, now=lambda: stub.state.now,
                              retry=RetryPolicy(attempts=3, first_wait=0.5, max_wait=30))


def test_15m_bars_are_regular_session_new_york_timestamps_with_early_close(stub, tmp_path):
    data = _provider(stub, tmp_path).load(["AAPL", "KO"], JUL1, JUL3, interval="15m")
    index = data.closes.index
    assert data.interval == "15m" and data.provenance["interval"] == "15m"
    assert index[0] == pd.Timestamp("2024-07-01 09:30") and index[-1] == pd.Timestamp("2024-07-03 12:45")
    assert len(outside_session(index)) == 0 and index.tz is None
    assert len(index) == 26 + 26 + 14
    assert data.provenance["feed"] == "iex" and data.provenance["adjustment"] == "all"
    q = stub.state.bars_requests()[0]
    assert q["timeframe"] == "15Min" and q["feed"] == "iex" and q["adjustment"] == "all"


def test_extended_hours_are_opt_in_and_cached_apart(stub, tmp_path):
    provider = _provider(stub, tmp_path)
    regular = provider.load(["AAPL"], JUL1, JUL1, interval="5m")
    extended = provider.load(["AAPL"], JUL1, JUL1, interval="5m", extended=True)
    assert extended.closes.index[0] == pd.Timestamp("2024-07-01 04:00")
    assert extended.closes.index[-1] == pd.Timestamp("2024-07-01 19:55")
    assert len(regular) == 78 and len(extended) == 192
    assert provider.cache("5m").folder != provider.cache("5m", extended=True).folder


def test_hour_bars_are_anchored_at_the_open(stub, tmp_path):
    data = _provider(stub, tmp_path).load(["AAPL"], JUL1, JUL1, interval="1h")
    assert [t.strftime("%H:%M") for t in data.closes.index] == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    assert stub.state.bars_requests()[0]["timeframe"] == "30Min"
    minutes = _provider(stub, tmp_path).load(["AAPL"], JUL1, JUL1, interval="1m")
    first_hour = minutes.closes["AAPL"].loc["2024-07-01 09:30":"2024-07-01 10:29"]
    assert data.closes["AAPL"].iloc[0] == pytest.approx(first_hour.iloc[-1])


def test_pagination_follows_next_page_token(stub, tmp_path):
    stub.state.page_size = 50
    data = _provider(stub, tmp_path).load(["AAPL", "KO", "MSFT"], JUL1, JUL3, interval="15m")
    queries = stub.state.bars_requests()
    assert len(queries) > 3 and all(q.get("page_token") for q in queries[1:])
    assert data.closes.shape == (66, 3) and not data.closes.isna().any().any()


def test_429_with_retry_after_is_retried_and_pagination_resumes(stub, tmp_path):
    stub.state.page_size = 40
    stub.state.rate_limit, stub.state.retry_after = 2, 7
    waits: list[float] = []
    provider = _provider(stub, tmp_path, waits)
    report = provider.fetch(["AAPL", "KO"], JUL1, JUL3, interval="15m")
    assert not report.failed and report.retries == 2 and waits == [7, 7]
    assert sorted(report.frames) == ["AAPL", "KO"] and len(report.frames["KO"]) == 66


def test_429_storm_names_what_failed_and_keeps_the_cache(stub, tmp_path):
    provider = _provider(stub, tmp_path)
    provider.load(["AAPL"], JUL1, dt.date(2024, 7, 2), interval="15m")
    before = provider.cache("15m").read("AAPL").bars
    stub.state.rate_limit = 100
    with pytest.raises(DataError, match=r"KO \(Alpaca rate limit, HTTP 429, still refused after retries\); 1 other symbol\(s\) loaded") as exc:
        provider.load(["AAPL", "KO"], JUL1, JUL3, interval="15m")
    assert "\n" not in str(exc.value)
    pd.testing.assert_frame_equal(provider.cache("15m").read("AAPL").bars, before)
    partial = provider.load(["AAPL", "KO"], JUL1, JUL3, interval="15m", strict=False)
    assert partial.symbols == ["AAPL"] and "KO" in partial.provenance["symbols_missing"]["rate_limited"]
    assert "AAPL" in partial.provenance["symbols_incomplete"]


def test_interrupted_fetch_keeps_earlier_batches_and_the_old_cache(stub, tmp_path):
    provider = _provider(stub, tmp_path)
    provider.batch_size = 1
    provider.load(["MSFT"], JUL1, JUL1, interval="15m")
    old_msft = provider.cache("15m").read("MSFT")
    stub.state.page_size = 100  # 176 bars (extended hours included) per symbol: two pages each
    stub.state.drop_after = len(stub.state.bars_requests()) + 3  # AAPL's pages pass, KO's second page is cut
    report = provider.fetch(["AAPL", "KO", "MSFT"], JUL1, JUL3, interval="15m")
    assert "AAPL" in report.downloaded and report.failed.get("KO") == "network"
    assert "MSFT" in report.incomplete  # served from its old cache, unfetched range named
    cache = provider.cache("15m")
    assert cache.read("KO") is None
    pd.testing.assert_frame_equal(cache.read("MSFT").bars, old_msft.bars)
    assert cache.read("MSFT").covered == old_msft.covered


def test_only_missing_ranges_are_fetched_and_offline_reads_the_cache(stub, tmp_path):
    provider = _provider(stub, tmp_path)
    first = provider.load(["AAPL"], JUL1, dt.date(2024, 7, 2), interval="15m")
    n = len(stub.state.bars_requests())
    again = provider.load(["AAPL"], JUL1, dt.date(2024, 7, 2), interval="15m")
    assert len(stub.state.bars_requests()) == n
    assert again.provenance["content_hash"] == first.provenance["content_hash"]
    provider.load(["AAPL"], JUL1, JUL3, interval="15m")
    assert stub.state.bars_requests()[-1]["start"].startswith("2024-07-03")
    offline = AlpacaDataProvider(AlpacaDataConfig("x", "y", url="http://127.0.0.1:9"), cache_dir=tmp_path,
                                 offline=True)
    data = offline.load(["AAPL"], JUL1, dt.date(2024, 7, 2), interval="15m")
    assert data.provenance["content_hash"] == first.provenance["content_hash"]


def test_daily_bars_from_alpaca_and_the_adjustment_is_recorded(stub, tmp_path):
    stub.state.splits["AAPL"] = ("2024-06-10", 4.0)
    adjusted = _provider(stub, tmp_path).load(["AAPL"], dt.date(2024, 6, 3), JUL3, interval="1d")
    raw = _provider(stub, tmp_path, adjustment="raw").load(["AAPL"], dt.date(2024, 6, 3), JUL3, interval="1d")
    assert adjusted.interval == "1d" and adjusted.closes.index.name == "date"
    assert adjusted.closes.index[0] == pd.Timestamp("2024-06-03") and adjusted.closes.index[-1] == pd.Timestamp("2024-07-03")
    ratio = raw.closes["AAPL"] / adjusted.closes["AAPL"]
    assert ratio.loc[:"2024-06-07"].round(3).eq(4.0).all() and ratio.loc["2024-06-10":].round(3).eq(1.0).all()
    assert adjusted.provenance["adjustment"] == "all" and raw.provenance["adjustment"] == "raw"
    assert adjusted.provenance["adjusted"] is True and raw.provenance["adjusted"] is False


def test_sip_needs_the_subscription_and_says_so(stub, tmp_path):
    with pytest.raises(DataError, match="subscription does not permit querying recent SIP data"):
        _provider(stub, tmp_path, feed="sip").load(["AAPL"], JUL1, JUL3, interval="15m")
    stub.state.sip_allowed = True
    data = _provider(stub, tmp_path, feed="sip").load(["AAPL"], JUL1, JUL3, interval="15m")
    assert data.provenance["feed"] == "sip" and stub.state.bars_requests()[-1]["feed"] == "sip"


def test_bad_keys_and_bad_config_are_one_line_errors(stub, tmp_path):
    bad = AlpacaDataProvider(AlpacaDataConfig(stub.key_id, "wrong", url=stub.url), cache_dir=tmp_path)
    with pytest.raises(DataError, match="Alpaca refused the keys"):
        bad.load(["AAPL"], JUL1, JUL1, interval="15m")
    with pytest.raises(DataError, match="unknown interval '30m'"):
        _provider(stub, tmp_path).load(["AAPL"], JUL1, JUL1, interval="30m")
    with pytest.raises(DataError, match="unknown Alpaca data feed"):
        AlpacaDataConfig("k", "s", feed="otc")


def test_history_at_a_moment_serves_only_completed_bars(stub, tmp_path):
    provider = _provider(stub, tmp_path)
    slot = dt.datetime(2024, 7, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    data = provider.history(["AAPL"], end=slot, bars=5, interval="15m")
    assert data.closes.index[-1] == pd.Timestamp("2024-07-02 09:45") and len(data) == 5


def test_open_provider_alpaca_uses_the_trading_keys(stub, tmp_path, monkeypatch):
    for key, value in stub.env().items():
        monkeypatch.setenv(key, value)
    provider = open_provider("alpaca", cache_dir=tmp_path)
    assert provider.name == "alpaca"
    data = provider.history(["KO"], end=JUL3, bars=3, interval="1d")
    assert len(data) == 3 and stub.state.bars_requests()[-1]["timeframe"] == "1Day"
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(DataError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        open_provider("alpaca")


def test_cli_fetch_from_alpaca_at_15m(stub, tmp_path, monkeypatch, capsys):
    from marketdata.__main__ import cli

    for key, value in stub.env().items():
        monkeypatch.setenv(key, value)
    args = ["fetch", "--source", "alpaca", "--interval", "15m", "--symbols", "AAPL,KO", "--start", "2024-07-01",
            "--end", "2024-07-02", "--cache-dir", str(tmp_path), "--quiet"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "15m bars" in out and "2 loaded" in out and "alpaca-iex-15m-all" in out
    stub.state.rate_limit, stub.state.retry_after = 100, 0
    with pytest.raises(SystemExit) as exc:
        cli(args[:-5] + ["--end", "2024-07-03", "--cache-dir", str(tmp_path), "--quiet", "--symbols", "MSFT"])
    assert exc.value.code == 2
    assert "MSFT (Alpaca rate limit" in capsys.readouterr().err
