"""Intraday bars from yfinance (real yfinance and curl_cffi code over the stubbed Yahoo transport) and from CSV.

The stub's intraday bars are **synthetic** (tests/_yahoo_stub.py): a deterministic path per XNYS session from the
previous close to the bundled sample's real close of that day. Yahoo's limits are the stub's as they are Yahoo's:
1m within 30 days and at most 8 days per request, 15m within 60 days, 1h within 730 days, HTTP 422 beyond.
"""

from __future__ import annotations

import datetime as dt
import re

import exchange_calendars
import numpy as np
import pandas as pd
import pytest

from _yahoo_stub import YahooStub
from marketdata import DataError, load_sample
from marketdata.csvfile import load_csv
from marketdata.provider import CsvProvider
from marketdata.yahoo import INTRADAY_LIMITS, RetryPolicy, YahooLimit, YahooProvider

TODAY = dt.date(2022, 12, 28)  # the stub's "now" is 19:00 New York time that day
NO_WAIT = RetryPolicy(attempts=2, first_wait=0, max_wait=0)
XNYS = exchange_calendars.get_calendar("XNYS", start="2020-01-02")


@pytest.fixture
def stub(monkeypatch):
    return YahooStub().install(monkeypatch)


@pytest.fixture
def make(tmp_path):
    def make(**kwargs) -> YahooProvider:
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("retry", NO_WAIT)
        kwargs.setdefault("today", lambda: TODAY)
        return YahooProvider(**kwargs)

    return make


def sessions(first: str, last: str) -> pd.DataFrame:
    schedule = XNYS.schedule.loc[first:last]
    return pd.DataFrame({"open": schedule["open"].dt.tz_convert("America/New_York").dt.tz_localize(None),
                         "close": schedule["close"].dt.tz_convert("America/New_York").dt.tz_localize(None)})


def spans(stub: YahooStub, symbol: str) -> list[float]:
    return [(r["period2"] - r["period1"]) / 86400 for r in stub.intraday_requests if r["symbol"] == symbol]


def test_1m_ranges_are_fetched_in_7_day_chunks_and_every_session_minute_arrives(stub, make):
    ticks: list[int] = []
    report = make().fetch(["AAPL", "KO"], dt.date(2022, 12, 1), dt.date(2022, 12, 28), interval="1m",
                          progress=ticks.append)
    assert report.failed == {} and report.downloads == 4
    assert ticks == [2]  # the progress bar counts a symbol once, when its last chunk is in
    assert spans(stub, "AAPL") == [7.0, 7.0, 7.0, 7.0] and spans(stub, "KO") == [7.0, 7.0, 7.0, 7.0]
    days = sessions("2022-12-01", "2022-12-28")
    bars = report.frames["AAPL"]
    assert len(bars) == int(((days["close"] - days["open"]).dt.total_seconds() // 60).sum())  # 390 a session
    assert bars.index[0] == pd.Timestamp("2022-12-01 09:30") and bars.index[-1] == pd.Timestamp("2022-12-28 15:59")
    # Each session's last minute closes on the sample's real close of that day (the synthetic path ends there).
    last = bars["close"].groupby(bars.index.normalize()).last()
    real = load_sample().closes["AAPL"].reindex(last.index)
    np.testing.assert_allclose(last.to_numpy(), real.to_numpy(), rtol=1e-6)


def test_without_the_chunks_yahoo_refuses_and_the_refusal_is_not_cached(stub, make, monkeypatch):
    monkeypatch.setitem(INTRADAY_LIMITS, "1m", YahooLimit(30, None))
    provider = make()
    report = provider.fetch(["AAPL"], dt.date(2022, 12, 1), dt.date(2022, 12, 28), interval="1m")
    assert report.failed == {"AAPL": "refused"}
    assert "Only 8 days worth of 1m granularity data" in report.failure_summary()
    assert provider.cache_for("1m").read("AAPL") is None  # not an "empty range" on disk
    with pytest.raises(DataError, match=r"AAPL \(refused by Yahoo: .*Only 8 days worth"):
        provider.history(["AAPL"], end=dt.date(2022, 12, 28), start=dt.date(2022, 12, 1), interval="1m")


def test_a_422_is_refused_not_cached_and_asked_again_next_time(stub, make):
    provider = make()
    stub.refuse_status["KO"] = (422, 2)  # yfinance asks once more with its other cookie strategy
    report = provider.fetch(["AAPL", "KO"], dt.date(2022, 12, 1), dt.date(2022, 12, 9), interval="15m")
    assert report.failed == {"KO": "refused"} and sorted(report.frames) == ["AAPL"]
    assert provider.cache_for("15m").read("KO") is None
    again = provider.fetch(["AAPL", "KO"], dt.date(2022, 12, 1), dt.date(2022, 12, 9), interval="15m")
    assert again.failed == {} and len(again.frames["KO"]) == 7 * 26
    assert spans(stub, "AAPL") == [9.0]  # AAPL came from the cache the second time


def test_a_failed_1m_chunk_leaves_no_hole_marked_covered(stub, make):
    provider = make()
    provider.fetch(["AAPL"], dt.date(2022, 12, 15), dt.date(2022, 12, 28), interval="1m")
    stub.intraday_requests.clear()
    stub.refuse_status["AAPL"] = (422, 2)  # the chunk next to the cache (12-08..12-14) is refused
    report = provider.fetch(["AAPL"], dt.date(2022, 12, 1), dt.date(2022, 12, 28), interval="1m")
    asked = [pd.Timestamp(r["period1"], unit="s", tz="UTC").tz_convert("America/New_York").date().isoformat()
             for r in stub.intraday_requests]
    # Refused requests are not recorded: 12-08 was asked first (backwards from the cache), then 12-01, then today.
    assert asked == ["2022-12-01", "2022-12-28"]
    assert "AAPL" in report.incomplete
    cached = provider.cache_for("1m").read("AAPL")
    assert cached.covered == (dt.date(2022, 12, 15), dt.date(2022, 12, 27))  # 12-01..12-07 stored, not covered
    assert cached.bars.index[0] == pd.Timestamp("2022-12-01 09:30")
    again = provider.fetch(["AAPL"], dt.date(2022, 12, 1), dt.date(2022, 12, 28), interval="1m")
    assert again.incomplete == {} and provider.cache_for("1m").read("AAPL").covered == (dt.date(2022, 12, 1),
                                                                                       dt.date(2022, 12, 27))
    assert len(again.frames["AAPL"]) == 19 * 390


@pytest.mark.parametrize("interval, start, days", [("1m", "2022-11-25", 30), ("15m", "2022-10-03", 60),
                                                   ("5m", "2022-10-03", 60), ("1h", "2020-12-01", 730)])
def test_a_range_beyond_yahoos_limit_is_one_line_naming_interval_and_limit(stub, make, interval, start, days):
    with pytest.raises(DataError) as err:
        make().history(["AAPL", "KO"], end=TODAY, start=dt.date.fromisoformat(start), interval=interval)
    message = str(err.value)
    assert "\n" not in message
    assert f"yfinance serves {interval} bars only for the last {days} days" in message
    assert "AAPL, KO" in message and "--source alpaca" in message
    assert stub.intraday_requests == []  # refused before anything was asked


def test_a_window_from_bars_stops_at_the_limit(stub, make):
    data = make().history(["AAPL"], end=TODAY, bars=5000, interval="15m")
    assert data.closes.index[0] >= pd.Timestamp(TODAY - dt.timedelta(days=59))
    assert data.closes.index[-1] == pd.Timestamp("2022-12-28 15:45")


def test_regular_hours_only_on_new_york_bar_starts_with_the_early_close(stub, make):
    # A stray print on a Saturday slips past yfinance's own filter (no trading period that day); one at 16:30
    # does not. Neither may reach the data.
    stub.stray_bars = [pd.Timestamp("2022-11-26 10:00"), pd.Timestamp("2022-11-28 16:30")]
    data = make().history(["AAPL"], end=dt.date(2022, 11, 28), start=dt.date(2022, 11, 23), interval="15m")
    index = data.closes.index
    assert data.interval == "15m" and index.tz is None
    by_day = pd.Series(index, index=index).groupby(index.normalize())
    assert [str(d.date()) for d in by_day.groups] == ["2022-11-23", "2022-11-25", "2022-11-28"]
    assert by_day.min().dt.strftime("%H:%M").tolist() == ["09:30"] * 3
    assert by_day.max().dt.strftime("%H:%M").tolist() == ["15:45", "12:45", "15:45"]  # 2022-11-25 closed at 13:00
    assert len(index) == 26 + 14 + 26
    p = data.provenance
    assert p["session"] == "regular (XNYS sessions)" and p["interval"] == "15m" and p["auto_adjust"] is True
    assert "not dividend-adjusted" in p["adjustment"] and p["source"] == "yfinance (Yahoo Finance 15m bars)"
    assert (p["first_bar"], p["last_bar"]) == ("2022-11-23T09:30:00", "2022-11-28T15:45:00")


def test_extended_hours_are_opt_in_and_cached_apart(stub, make):
    provider = make()
    regular = provider.history(["KO"], end=dt.date(2022, 12, 2), start=dt.date(2022, 12, 2), interval="15m")
    extended = provider.history(["KO"], end=dt.date(2022, 12, 2), start=dt.date(2022, 12, 2), interval="15m",
                                extended=True)
    assert len(regular) == 26 and len(extended) == 64  # 04:00-20:00
    assert extended.closes.index[0] == pd.Timestamp("2022-12-02 04:00")
    assert [r["prepost"] for r in stub.intraday_requests] == [False, True]
    assert provider.cache_for("15m", extended=True).folder.name == "yahoo-15m-adjusted-extended"


def test_hour_bars_start_at_the_open(stub, make):
    data = make().history(["AAPL"], end=dt.date(2022, 12, 2), start=dt.date(2022, 12, 2), interval="1h")
    assert data.closes.index.strftime("%H:%M").tolist() == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30",
                                                            "15:30"]


def test_missing_ranges_are_filled_and_offline_reads_the_cache(stub, make):
    provider = make()
    provider.fetch(["AAPL"], dt.date(2022, 12, 1), dt.date(2022, 12, 9), interval="15m")
    stub.intraday_requests.clear()
    report = provider.fetch(["AAPL"], dt.date(2022, 12, 1), dt.date(2022, 12, 16), interval="15m")
    [asked] = stub.intraday_requests
    assert pd.Timestamp(asked["period1"], unit="s", tz="UTC").tz_convert("America/New_York") == \
        pd.Timestamp("2022-12-10", tz="America/New_York")  # only the missing days
    assert len(report.frames["AAPL"]) == 12 * 26
    assert provider.cache_for("15m").read("AAPL").covered == (dt.date(2022, 12, 1), dt.date(2022, 12, 16))
    online = provider.history(["AAPL"], end=dt.date(2022, 12, 16), start=dt.date(2022, 12, 1), interval="15m")
    stub.offline = True
    offline = make(offline=True).history(["AAPL"], end=dt.date(2022, 12, 16), start=dt.date(2022, 12, 1),
                                         interval="15m")
    pd.testing.assert_frame_equal(offline.closes, online.closes)
    assert offline.provenance["content_hash"] == online.provenance["content_hash"]
    # Months later the range is beyond Yahoo's limit, but the cache still serves it, online too.
    later = make(today=lambda: dt.date(2023, 6, 1))
    stub.offline = False
    assert len(later.history(["AAPL"], end=dt.date(2022, 12, 16), start=dt.date(2022, 12, 1), interval="15m")) == 312
    # Offline past the cached range: the cache is served, marked incomplete (as for daily bars).
    partial = make(offline=True).history(["AAPL"], end=dt.date(2022, 12, 20), start=dt.date(2022, 12, 1),
                                         interval="15m")
    assert len(partial) == 312 and "offline" in partial.provenance["symbols_incomplete"]["AAPL"]


def test_a_datetime_end_serves_only_completed_bars(stub, make):
    moment = dt.datetime(2022, 12, 2, 10, 50)
    data = make().history(["AAPL"], end=moment, bars=3, interval="15m")
    assert [str(t) for t in data.closes.index] == ["2022-12-02 10:00:00", "2022-12-02 10:15:00",
                                                   "2022-12-02 10:30:00"]


def test_cli_fetch_from_yfinance_at_15m(stub, tmp_path, capsys, monkeypatch):
    import marketdata.yahoo as yahoo
    from marketdata.__main__ import cli

    monkeypatch.setattr(yahoo, "_new_york_today", lambda: TODAY)
    cache = str(tmp_path / "c")
    code = cli(["fetch", "--symbols", "AAPL,KO", "--interval", "15m", "--start", "2022-12-01", "--end",
                "2022-12-28", "--cache-dir", cache])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 symbol(s), 15m bars, 2022-12-01 to 2022-12-28: 2 loaded, 2 updated from Yahoo" in out
    assert out.strip().endswith("yahoo-15m-adjusted")
    try:
        code = cli(["fetch", "--symbols", "AAPL", "--interval", "1m", "--start", "2022-11-01", "--cache-dir", cache,
                    "--end", "2022-12-28"])
    except SystemExit as exc:  # bad input leaves through clitools' one-line error (exit 2)
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: yfinance serves 1m bars only for the "
                                                                 "last 30 days (from 2022-11-29)")
    assert cli(["info", "--interval", "15m", "--cache-dir", cache, "--symbols", "KO"]) == 0
    out = capsys.readouterr().out
    assert "yahoo-15m-adjusted (adjusted 15m bars, New York bar starts)" in out
    # 19 sessions of 26 bars; today's session (2022-12-28) is stored but not marked covered.
    assert re.search(rf"KO\s+{19 * 26} bars  2022-12-01 to 2022-12-27", out), out
    assert cli(["clear", "--interval", "15m", "--symbols", "KO", "--cache-dir", cache]) == 0
    assert "removed 1 file(s) from" in capsys.readouterr().out
    assert YahooProvider(cache_dir=cache).cache_for("15m").symbols() == ["AAPL"]


# ------------------------------------------------------------------------------------------------------------
# CSV files with a timestamp column


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_intraday_csv_long_or_wide_loads_with_its_interval(tmp_path):
    wide = write(tmp_path, "wide.csv", "timestamp,AAA,BBB\n2024-07-01 09:30,10,20\n2024-07-01 09:35,11,21\n"
                                       "2024-07-01 09:45,12,22\n2024-07-02 09:30,13,23\n2024-07-02 09:35,14,24\n")
    data = load_csv(wide)
    assert data.interval == "5m" and data.closes.index[2] == pd.Timestamp("2024-07-01 09:45")
    assert data.provenance["interval"] == "5m" and data.provenance["timestamps"].startswith("bar start")
    long = write(tmp_path, "long.csv", "datetime,symbol,open,close\n"
                                       "2024-07-01T13:30:00Z,AAA,9.9,10\n2024-07-01T14:30:00Z,AAA,10,11\n"
                                       "2024-07-01 09:30-04:00,BBB,19.9,20\n2024-07-01 10:30-04:00,BBB,20,21\n")
    hourly = CsvProvider(str(long)).history(["AAA", "BBB"], end=dt.date(2024, 7, 1), start=dt.date(2024, 7, 1),
                                            interval="1h")
    assert [str(t) for t in hourly.closes.index] == ["2024-07-01 09:30:00", "2024-07-01 10:30:00"]
    assert hourly.closes["BBB"].tolist() == [20.0, 21.0] and hourly.opens["AAA"].tolist() == [9.9, 10.0]
    with pytest.raises(DataError, match="has 1h bars, not 15m"):
        CsvProvider(str(long)).history(["AAA"], end=dt.date(2024, 7, 1), bars=2, interval="15m")


def test_a_daily_csv_is_unchanged(tmp_path):
    path = write(tmp_path, "d.csv", "date,symbol,close\n2022-01-03,AAA,10\n2022-01-04,AAA,11\n")
    data = load_csv(path)
    assert data.interval == "1d" and data.closes.index.name == "date"
    assert data.closes.index.tolist() == [pd.Timestamp("2022-01-03"), pd.Timestamp("2022-01-04")]


def test_mixed_intervals_name_the_first_offending_row(tmp_path):
    path = write(tmp_path, "m.csv", "timestamp,symbol,close\n"
                                    "2024-07-01 09:30,AAA,10\n2024-07-01 09:45,AAA,11\n2024-07-01 10:00,AAA,12\n"
                                    "2024-07-01 09:30,BBB,10\n2024-07-01 09:45,BBB,11\n2024-07-01 09:50,BBB,12\n")
    with pytest.raises(DataError) as err:
        load_csv(path)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"mixed intervals in {path}: line 7 (2024-07-01 09:50:00) comes 5 minutes after the bar "
                       f"before it, while the file's bars are 15 minutes apart")
    other_day = write(tmp_path, "d.csv", "timestamp,AAA\n2024-07-01 09:30,1\n2024-07-01 09:45,1\n2024-07-01 10:00,1\n"
                                         "2024-07-02 09:30,1\n2024-07-02 10:30,1\n2024-07-02 11:30,1\n"
                                         "2024-07-03 09:30,1\n2024-07-03 09:45,1\n")
    with pytest.raises(DataError, match=r"line 6 \(2024-07-02 10:30:00\) comes 60 minutes"):
        load_csv(other_day)


def test_a_bar_outside_the_session_names_its_row(tmp_path):
    early_close = write(tmp_path, "e.csv", "timestamp,AAA\n2024-07-03 12:30,1\n2024-07-03 12:45,1\n"
                                           "2024-07-03 13:00,1\n")
    with pytest.raises(DataError, match=r"timestamp 2024-07-03 13:00:00 on line 4 of .* is outside the New York "
                                        r"regular session"):
        load_csv(early_close)
    holiday = write(tmp_path, "h.csv", "timestamp,AAA\n2024-07-04 09:30,1\n2024-07-04 09:45,1\n")
    with pytest.raises(DataError, match="2024-07-04 09:30:00 on line 2"):
        load_csv(holiday)
    premarket = write(tmp_path, "p.csv", "timestamp,AAA\n2024-07-01 08:00,1\n2024-07-01 08:15,1\n")
    with pytest.raises(DataError, match="line 2"):
        load_csv(premarket)
    assert load_csv(premarket, extended=True).interval == "15m"
