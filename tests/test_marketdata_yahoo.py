"""The yfinance provider and its cache, with the real yfinance and curl_cffi code over a stubbed transport.

The stub (tests/_yahoo_stub.py) answers in Yahoo's chart JSON shape from the bundled sample's real closes, so
every number a test reads back can be checked against the sample.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _yahoo_stub import YahooStub
from marketdata import DataError, load_sample
from marketdata.cache import CacheCorruptError, PriceCache
from marketdata.yahoo import FetchReport, RetryPolicy, YahooProvider

JUNE = (dt.date(2022, 6, 1), dt.date(2022, 6, 30))
NO_WAIT = RetryPolicy(attempts=3, first_wait=0, max_wait=0)


@pytest.fixture
def stub(monkeypatch):
    return YahooStub().install(monkeypatch)


@pytest.fixture
def make(tmp_path):
    def make(**kwargs) -> YahooProvider:
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("retry", NO_WAIT)
        kwargs.setdefault("today", lambda: dt.date(2023, 1, 10))
        return YahooProvider(**kwargs)

    return make


def sample_closes(symbol: str, start: dt.date, end: dt.date) -> pd.Series:
    closes = load_sample().closes[symbol]
    return closes[(closes.index >= pd.Timestamp(start)) & (closes.index <= pd.Timestamp(end))].dropna()


def test_first_fetch_downloads_once_per_symbol_in_one_batch_and_matches_yahoo(stub, make):
    report = make().fetch(["AAPL", "KO", "MSFT"], *JUNE)
    assert report.failed == {}
    assert report.downloads == 1  # one batched yf.download call
    assert dict(stub.history_requests) == {"AAPL": 1, "KO": 1, "MSFT": 1}
    for symbol in ("AAPL", "KO", "MSFT"):
        expected = sample_closes(symbol, *JUNE)
        got = report.frames[symbol]["close"]
        assert list(got.index) == list(expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6)


def test_batches_split_the_symbols_and_progress_counts_every_symbol(stub, make):
    make().fetch(["AAPL"], *JUNE)
    ticks: list[int] = []
    report = make(batch_size=2).fetch(["AAPL", "KO", "MSFT", "JPM", "XOM"], *JUNE, progress=ticks.append)
    assert report.downloads == 2  # AAPL was cached; four symbols in batches of two
    assert sorted(report.frames) == ["AAPL", "JPM", "KO", "MSFT", "XOM"]
    assert ticks == [1, 2, 2]


def test_cache_hit_makes_no_second_request_even_from_a_new_process(stub, make):
    make().fetch(["AAPL", "KO"], *JUNE)
    before = stub.all_requests
    again = make().fetch(["AAPL", "KO"], dt.date(2022, 6, 6), dt.date(2022, 6, 24))  # a new provider: the disk cache
    assert stub.all_requests == before
    assert again.downloads == 0 and again.failed == {}
    assert again.frames["AAPL"].index[0] == pd.Timestamp("2022-06-06")
    assert again.frames["AAPL"].index[-1] == pd.Timestamp("2022-06-24")


def test_incremental_fill_asks_only_for_the_missing_ranges(stub, make):
    provider = make()
    provider.fetch(["AAPL"], *JUNE)
    stub.ranges.clear()
    report = provider.fetch(["AAPL"], dt.date(2022, 5, 16), dt.date(2022, 7, 15))
    # The tail starts at the last cached bar (one bar of overlap, to notice a new split or dividend).
    assert sorted(stub.ranges) == [("AAPL", "2022-05-16", "2022-06-01"), ("AAPL", "2022-06-30", "2022-07-15")]
    expected = sample_closes("AAPL", dt.date(2022, 5, 16), dt.date(2022, 7, 15))
    np.testing.assert_allclose(report.frames["AAPL"]["close"].to_numpy(), expected.to_numpy(), rtol=1e-6)
    assert PriceCache(provider.cache.root).read("AAPL").covered == (dt.date(2022, 5, 16), dt.date(2022, 7, 15))


def test_a_weekend_is_asked_for_once(stub, make):
    provider = make()
    report = provider.fetch(["AAPL"], dt.date(2022, 6, 4), dt.date(2022, 6, 5))
    assert report.failed == {"AAPL": "no_bars"}
    requests = stub.history_requests["AAPL"]
    provider.fetch(["AAPL"], dt.date(2022, 6, 4), dt.date(2022, 6, 5))
    assert stub.history_requests["AAPL"] == requests


def test_the_current_session_bar_is_fetched_again(stub, make):
    provider = make(today=lambda: dt.date(2022, 6, 15))
    provider.fetch(["KO"], dt.date(2022, 6, 1), dt.date(2022, 6, 15))
    assert provider.cache.read("KO").covered == (dt.date(2022, 6, 1), dt.date(2022, 6, 14))
    provider.fetch(["KO"], dt.date(2022, 6, 1), dt.date(2022, 6, 14))
    assert stub.history_requests["KO"] == 1
    provider.fetch(["KO"], dt.date(2022, 6, 1), dt.date(2022, 6, 15))  # today's bar may have moved
    assert stub.history_requests["KO"] == 2
    # Store an intraday price for 2022-06-15, as a run during that session would have seen.
    cached = provider.cache.read("KO")
    bars = cached.bars.copy()
    bars.loc[pd.Timestamp("2022-06-15"), "close"] *= 1.01
    provider.cache.write("KO", bars, covered=cached.covered, fetched_at=cached.fetched_at)
    stub.ranges.clear()
    next_day = make(today=lambda: dt.date(2022, 6, 16))
    report = next_day.fetch(["KO"], dt.date(2022, 6, 1), dt.date(2022, 6, 16))
    assert stub.ranges == [("KO", "2022-06-14", "2022-06-16")]  # the overlap is the last finished bar: no refetch
    expected = sample_closes("KO", dt.date(2022, 6, 1), dt.date(2022, 6, 16))
    np.testing.assert_allclose(report.frames["KO"]["close"].to_numpy(), expected.to_numpy(), rtol=1e-6)


def test_a_new_dividend_adjustment_refetches_the_whole_symbol(stub, make):
    provider = make()
    provider.fetch(["AAPL", "KO"], *JUNE)
    stub.scale["AAPL"] = 0.98  # Yahoo now serves AAPL's whole history scaled, as after a dividend
    report = provider.fetch(["AAPL", "KO"], dt.date(2022, 6, 1), dt.date(2022, 7, 15))
    expected = sample_closes("AAPL", dt.date(2022, 6, 1), dt.date(2022, 7, 15)) * 0.98
    np.testing.assert_allclose(report.frames["AAPL"]["close"].to_numpy(), expected.to_numpy(), rtol=1e-6)
    expected_ko = sample_closes("KO", dt.date(2022, 6, 1), dt.date(2022, 7, 15))
    np.testing.assert_allclose(report.frames["KO"]["close"].to_numpy(), expected_ko.to_numpy(), rtol=1e-6)
    assert ("AAPL", "2022-06-01", "2022-07-15") in stub.ranges


def test_class_shares_use_yahoos_spelling_and_keep_ours(monkeypatch, make):
    closes = load_sample().closes[["KO"]].rename(columns={"KO": "BRK.B"})
    stub = YahooStub(closes).install(monkeypatch)
    data = make().history(["BRK.B"], end=JUNE[1], start=JUNE[0])
    assert data.symbols == ["BRK.B"]
    assert stub.history_requests["BRK-B"] == 1


def test_history_returns_the_last_bars_up_to_end(stub, make):
    data = make().history(["AAPL", "KO"], end=dt.date(2022, 12, 28), bars=10)
    assert len(data) == 10
    assert data.closes.index[-1] == pd.Timestamp("2022-12-28")
    assert data.opens is not None and (data.opens["KO"] < data.closes["KO"]).all()  # the stub's open = 0.995 close


def test_unknown_symbol_is_named_not_a_silent_empty_column(stub, make):
    provider = make()
    with pytest.raises(DataError) as err:
        provider.history(["AAPL", "ZZZZ"], end=JUNE[1], start=JUNE[0])
    message = str(err.value)
    assert "ZZZZ (unknown or delisted on Yahoo)" in message and "1 other symbol(s) loaded" in message
    lenient = provider.load(["AAPL", "ZZZZ"], *JUNE, strict=False)
    assert lenient.symbols == ["AAPL"]
    assert lenient.provenance["symbols_missing"] == {"unknown": ["ZZZZ"]}
    # the live path asks through the PriceProvider interface, with strict=False for its universe
    live = provider.history(["AAPL", "ZZZZ"], end=JUNE[1], start=JUNE[0], strict=False)
    assert live.symbols == ["AAPL"] and live.provenance["symbols_missing"] == {"unknown": ["ZZZZ"]}


JUNK = ["", "  ", "A/B", "BRK B", "../etc"]


@pytest.fixture(params=["sample", "yfinance"])
def any_provider(request, stub, make):
    from marketdata.provider import SampleProvider

    return SampleProvider() if request.param == "sample" else make()


def test_junk_symbols_are_skipped_and_named_the_same_way_by_every_provider(any_provider):
    data = any_provider.history(["AAPL", *JUNK, "KO", "ZZZZ", "aapl"], end=JUNE[1], start=JUNE[0], strict=False)
    assert data.symbols == ["AAPL", "KO"]
    assert data.provenance["symbols_missing"] == {"invalid": ["", "A/B", "BRK B", "../ETC"], "unknown": ["ZZZZ"]}
    np.testing.assert_allclose(data.closes["KO"].to_numpy(), sample_closes("KO", *JUNE).to_numpy(), rtol=1e-6)


def test_only_an_all_junk_request_is_an_error(any_provider):
    with pytest.raises(DataError, match=r"invalid symbol\(s\) '', 'A/B'"):
        any_provider.history(["", "A/B"], end=JUNE[1], start=JUNE[0], strict=False)
    with pytest.raises(DataError, match="ZZZZ"):
        any_provider.history(["ZZZZ", "A/B"], end=JUNE[1], start=JUNE[0], strict=False)
    with pytest.raises(DataError, match="A/B"):  # a strict request names the junk symbol and stops
        any_provider.history(["AAPL", "A/B"], end=JUNE[1], start=JUNE[0])


def test_a_junk_universe_symbol_does_not_stop_the_live_cycle_on_yfinance(stub, make):
    from live.history import load_history
    from strategies import StrategyParams

    params = StrategyParams(history=60, refit_every=5)
    history = load_history(make(), ["KO", "PG", "A/B", "", "ZZZZ"], ["AAPL"], dt.date(2022, 6, 1),
                           dt.date(2022, 5, 31), params)
    assert history.data.symbols == ["KO", "PG", "AAPL"] and history.unpriced == []
    assert history.unavailable == ["A/B", "", "ZZZZ"]
    assert history.data.provenance["symbols_missing"] == {"unknown": ["ZZZZ"], "invalid": ["A/B", ""]}


def test_rate_limit_is_retried_with_backoff_then_succeeds(stub, make):
    waits: list[float] = []
    provider = make(retry=RetryPolicy(attempts=3, first_wait=1.0, max_wait=8.0), sleep=waits.append)
    stub.rate_limit["KO"] = 2  # yfinance itself retries a 429 once; the second 429 raises YFRateLimitError
    data = provider.history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    assert data.symbols == ["AAPL", "KO"]
    assert len(waits) == 1 and 1.0 <= waits[0] <= 2.0
    assert stub.history_requests["AAPL"] == 1  # only the rate-limited symbol was asked again


def test_persistent_rate_limit_is_reported_by_name_and_the_rest_is_kept(stub, make):
    waits: list[float] = []
    provider = make(retry=RetryPolicy(attempts=3, first_wait=1.0, max_wait=8.0), sleep=waits.append)
    stub.rate_limit["KO"] = 1000
    with pytest.raises(DataError, match=r"KO \(Yahoo rate limit, HTTP 429, still refused after retries\); 1 other"):
        provider.history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    assert len(waits) == 2 and waits[1] >= 2.0  # exponential: ~1s, then ~2s
    assert provider.cache.read("AAPL") is not None and provider.cache.read("KO") is None


def test_server_errors_are_retried_then_reported(stub, make):
    stub.server_error = True
    with pytest.raises(DataError, match=r"AAPL \(Yahoo server error, still failing after retries\)"):
        make().history(["AAPL"], end=JUNE[1], start=JUNE[0])
    report = make().fetch(["AAPL", "KO"], *JUNE)
    assert report.failed == {"AAPL": "server", "KO": "server"} and report.downloads == NO_WAIT.attempts
    stub.server_error = False
    assert sorted(make().fetch(["AAPL", "KO"], *JUNE).frames) == ["AAPL", "KO"]  # nothing bad was cached


def test_offline_with_a_warm_cache_serves_the_cache(stub, make):
    make().fetch(["AAPL", "KO"], *JUNE)
    warm = make().history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    stub.offline = True
    offline = make().history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    pd.testing.assert_frame_equal(offline.closes, warm.closes)
    assert offline.provenance == warm.provenance
    # Past the cached range: served from the cache, marked incomplete, and no retry storm.
    requests = stub.all_requests
    report = make().fetch(["AAPL", "KO"], dt.date(2022, 6, 1), dt.date(2022, 7, 29))
    assert sorted(report.frames) == ["AAPL", "KO"] and report.downloads == 1
    assert set(report.incomplete) == {"AAPL", "KO"}
    assert stub.all_requests - requests < 20
    assert make(offline=True).history(["KO"], end=JUNE[1], start=JUNE[0]).symbols == ["KO"]


def test_cold_cache_offline_is_a_clear_error(stub, make):
    stub.offline = True
    with pytest.raises(DataError, match=r"AAPL, KO \(not cached, and Yahoo could not be reached\); nothing else loaded"):
        make().history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    with pytest.raises(DataError, match=r"AAPL \(not cached, and offline mode is on\)"):
        make(offline=True).history(["AAPL"], end=JUNE[1], start=JUNE[0])


def test_offline_mode_from_the_environment_never_touches_the_network(stub, make, monkeypatch):
    monkeypatch.setenv("PROPHETTREND_OFFLINE", "1")
    with pytest.raises(DataError, match="offline mode"):
        make().history(["AAPL"], end=JUNE[1], start=JUNE[0])
    assert stub.all_requests == 0


def test_corrupt_cache_file_is_named_and_never_deleted(stub, make):
    provider = make()
    provider.fetch(["AAPL", "KO"], *JUNE)
    path = provider.cache.path("AAPL")
    path.write_bytes(b"PAR1 this is not parquet")
    report = provider.fetch(["AAPL", "KO"], dt.date(2022, 6, 1), dt.date(2022, 7, 15))  # needs a new range too
    assert report.failed == {"AAPL": "corrupt"} and sorted(report.frames) == ["KO"]
    assert path.read_bytes() == b"PAR1 this is not parquet"
    with pytest.raises(DataError) as err:
        provider.history(["AAPL"], end=JUNE[1], start=JUNE[0])
    assert str(path) in str(err.value) and "left in place" in str(err.value)
    assert path.read_bytes() == b"PAR1 this is not parquet"
    assert stub.history_requests["AAPL"] == 1  # never re-downloaded over the damaged file


def test_a_crash_mid_write_leaves_the_cache_readable(stub, make, monkeypatch):
    provider = make()
    provider.fetch(["AAPL"], *JUNE)
    before = provider.cache.read("AAPL")

    def torn_write(where, table, **kwargs):
        where.write(b"\x93NUMPY half a file")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(np, "save", torn_write)
    with pytest.raises(KeyboardInterrupt):
        provider.fetch(["AAPL"], dt.date(2022, 6, 1), dt.date(2022, 7, 15))
    monkeypatch.undo()
    after = provider.cache.read("AAPL")
    pd.testing.assert_frame_equal(after.bars, before.bars)
    assert after.covered == before.covered
    assert provider.cache.stray_temporaries() == []
    # A temporary file left by a killed process (no cleanup at all) is ignored by readers.
    (provider.cache.folder / ".AAPL.kill9.tmp").write_bytes(b"PAR1 torn")
    assert provider.cache.symbols() == ["AAPL"]
    assert make(offline=True).history(["AAPL"], end=JUNE[1], start=JUNE[0]).symbols == ["AAPL"]


def test_an_unwritable_cache_still_returns_the_download(stub, make, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "save", refuse)
    report = make().fetch(["AAPL"], *JUNE)
    assert "AAPL" in report.frames and "Permission denied" in report.cache_write_errors["AAPL"]


def test_provenance_fields_are_present_and_stable(stub, make):
    first = make().history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    second = make().history(["AAPL", "KO"], end=JUNE[1], start=JUNE[0])
    p = first.provenance
    assert p["source"] == "yfinance (Yahoo Finance daily bars)" and p["adjusted"] is True and p["auto_adjust"] is True
    assert p["content_hash"].startswith("sha256:") and dt.datetime.fromisoformat(p["fetched_at"])
    assert (p["first_date"], p["last_date"]) == ("2022-06-01", "2022-06-30")
    assert p["symbols_missing"] == {} and p["symbols_incomplete"] == {}
    assert json.dumps(p)  # goes into summary.json as it is
    assert second.provenance == p
    raw = make(adjusted=False).history(["AAPL"], end=JUNE[1], start=JUNE[0])
    assert raw.provenance["adjusted"] is False and "yahoo-daily-raw" in str(make(adjusted=False).cache.folder)


def test_empty_range_and_bad_dates_are_errors(stub, make):
    with pytest.raises(DataError, match="empty date range"):
        make().fetch(["AAPL"], dt.date(2022, 6, 30), dt.date(2022, 6, 1))
    with pytest.raises(DataError, match="invalid symbol"):
        make().fetch(["AA PL"], *JUNE)
    with pytest.raises(DataError, match="no symbols"):
        make().fetch([" "], *JUNE)
    with pytest.raises(DataError, match="no bars in the window"):
        make().history(["AAPL"], end=dt.date(2022, 6, 5), start=dt.date(2022, 6, 4))


def test_failure_summary_shortens_long_lists():
    report = FetchReport(start=JUNE[0], end=JUNE[1], failed={f"S{i:02}": "unknown" for i in range(15)})
    assert "S11 and 3 more (unknown or delisted on Yahoo); nothing else loaded" in report.failure_summary()


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROPHETTREND_CACHE", str(tmp_path / "env-cache"))
    assert YahooProvider().cache.root == tmp_path / "env-cache"
    assert Path(os.environ["PROPHETTREND_CACHE"]) == PriceCache().root
    with pytest.raises(CacheCorruptError.__mro__[1]):  # DataError
        PriceCache().path("../etc")


def test_another_4xx_is_refused_named_and_never_cached_as_an_empty_range(stub, make):
    provider = make()
    stub.refuse_status["KO"] = (422, 2)  # yfinance asks a second time with its other cookie strategy
    report = provider.fetch(["AAPL", "KO"], *JUNE)
    assert report.failed == {"KO": "refused"} and "refused by Yahoo" in report.failure_summary()
    assert provider.cache.read("KO") is None  # an empty "covered" range would hide June from every later run
    assert sorted(provider.fetch(["AAPL", "KO"], *JUNE).frames) == ["AAPL", "KO"]
