"""``python -m marketdata`` and ``--data yfinance`` in the backtest CLI, over the stubbed Yahoo transport;
the S&P 500 snapshot and its refresh (from a page served on 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from _yahoo_stub import YahooStub
from marketdata import DataError
from marketdata.__main__ import cli
from marketdata.universe import load_sp500, refresh_sp500, refreshed_path

ROOT = Path(__file__).resolve().parents[1]
GICS = {"Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy", "Financials",
        "Health Care", "Industrials", "Information Technology", "Materials", "Real Estate", "Utilities"}


@pytest.fixture
def stub(monkeypatch):
    return YahooStub().install(monkeypatch)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli(list(argv))
    except SystemExit as exc:  # argparse errors exit through OneLineErrorParser
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_fetch_info_clear_round_trip(stub, tmp_path, capsys):
    cache = str(tmp_path / "c")
    code, out, _ = run(capsys, "fetch", "--symbols", "AAPL,KO", "--start", "2022-06-01", "--end", "2022-06-30",
                       "--cache-dir", cache)
    assert code == 0 and "2 loaded, 2 updated from Yahoo in 1 download(s)" in out
    code, out, _ = run(capsys, "fetch", "--symbols", "AAPL,KO", "--start", "2022-06-01", "--end", "2022-06-30",
                       "--cache-dir", cache)
    assert code == 0 and "2 loaded, 0 updated from Yahoo in 0 download(s)" in out
    code, out, _ = run(capsys, "info", "--cache-dir", cache, "--symbols", "AAPL,MSFT")
    assert code == 0 and "symbols: 2, bars: 42" in out and "dates covered: 2022-06-01 to 2022-06-30" in out
    assert "AAPL         21 bars  2022-06-01 to 2022-06-30" in out and "MSFT     not cached" in out
    assert "S&P 500 snapshot of 2026-03-09" in out
    code, out, err = run(capsys, "clear", "--symbols", "AAPL,MSFT", "--cache-dir", cache)
    assert code == 0 and "removed 1 file(s)" in out and "not cached: MSFT" in err
    code, out, _ = run(capsys, "clear", "--all", "--cache-dir", cache)
    assert code == 0 and "removed 1 file(s)" in out
    assert run(capsys, "info", "--cache-dir", cache)[1].count("symbols: 0") == 1


def test_fetch_names_unknown_symbols(stub, tmp_path, capsys):
    code, out, err = run(capsys, "fetch", "--symbols", "AAPL,ZZZZ", "--start", "2022-06-01", "--end", "2022-06-30",
                         "--cache-dir", str(tmp_path))
    assert code == 1 and "warning: ZZZZ (unknown or delisted on Yahoo); 1 other symbol(s) loaded" in err
    code, out, err = run(capsys, "fetch", "--symbols", "ZZZZ,YYYY", "--start", "2022-06-01", "--end", "2022-06-30",
                         "--cache-dir", str(tmp_path))
    assert code == 2 and one_error_line(err) == "error: YYYY, ZZZZ (unknown or delisted on Yahoo); nothing else loaded"


def test_fetch_offline_cold_and_warm(stub, tmp_path, capsys):
    args = ["fetch", "--symbols", "KO", "--start", "2022-06-01", "--end", "2022-06-30", "--cache-dir", str(tmp_path)]
    stub.offline = True
    code, _, err = run(capsys, *args)  # nothing saved, and not the user's fault: the fetch failed
    assert code == 1 and "fetch failed, nothing saved: KO (not cached, and Yahoo could not be reached)" in one_error_line(err)
    stub.offline = False
    assert run(capsys, *args)[0] == 0
    stub.offline = True
    code, out, err = run(capsys, *args[:-4], "--end", "2022-07-15", "--cache-dir", str(tmp_path))
    assert code == 1 and "1 loaded" in out
    assert "fetch failed, nothing saved: 1 symbol(s) kept without their missing range" in one_error_line(err)


def test_fetch_that_saves_nothing_exits_1_and_names_what_failed(stub, tmp_path, capsys, monkeypatch):
    import errno

    from marketdata.cache import PriceCache

    real_write = PriceCache.write

    def full_disk(self, symbol, *args, **kwargs):
        if symbol in full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, symbol, *args, **kwargs)

    monkeypatch.setattr(PriceCache, "write", full_disk)
    args = ["fetch", "--symbols", "AAPL,KO", "--start", "2022-06-01", "--end", "2022-06-30", "--cache-dir", str(tmp_path)]
    full = {"AAPL", "KO"}
    code, _, err = run(capsys, *args)
    assert code == 1
    assert one_error_line(err) == ("error: fetch failed, nothing saved: 2 symbol(s) downloaded but not saved, the cache "
                                   "could not be written (No space left on device): AAPL, KO")
    full = {"KO"}
    code, _, err = run(capsys, *args)  # AAPL saved, KO not: both named
    assert code == 1
    assert "saved: 1 symbol(s) complete in the cache: AAPL" in err
    assert "warning: 1 symbol(s) downloaded but not saved, the cache could not be written (No space left on device): KO" in err
    full = set()
    assert run(capsys, *args)[0] == 0


def test_fetch_with_a_real_read_only_cache_exits_1(stub, tmp_path, capsys):
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o555)
    if os.access(cache, os.W_OK):  # root ignores the mode bits; sysfs refuses new folders even to root
        cache = Path("/sys") / "prophettrend-test-cache"
        if not Path("/sys").is_dir() or cache.exists():
            pytest.skip("no read-only folder available")
    code, _, err = run(capsys, "fetch", "--symbols", "KO", "--start", "2022-06-01", "--end", "2022-06-30",
                       "--cache-dir", str(cache))
    assert code == 1 and "fetch failed, nothing saved" in one_error_line(err)


@pytest.mark.parametrize("command", [["fetch", "--start", "2022-06-01"], ["info"]])
def test_an_empty_symbol_list_is_an_error_not_every_symbol(stub, tmp_path, capsys, command):
    code, out, err = run(capsys, *command, "--symbols", "", "--cache-dir", str(tmp_path))
    assert code == 2 and "--symbols lists no symbols" in one_error_line(err)
    assert stub.all_requests == 0 and out == ""


def test_fetch_rate_limited_is_reported(stub, tmp_path, capsys, monkeypatch):
    import functools

    import marketdata.__main__ as entry
    from marketdata.yahoo import RetryPolicy, YahooProvider

    monkeypatch.setattr(entry, "YahooProvider", functools.partial(YahooProvider, retry=RetryPolicy(2, 0, 0)))
    stub.rate_limit["KO"] = 1000
    code, _, err = run(capsys, "fetch", "--symbols", "AAPL,KO", "--start", "2022-06-01", "--end", "2022-06-30",
                       "--cache-dir", str(tmp_path))
    assert code == 1 and "KO (Yahoo rate limit, HTTP 429, still refused after retries)" in err


def test_corrupt_file_is_reported_and_kept(stub, tmp_path, capsys):
    args = ["--symbols", "KO", "--start", "2022-06-01", "--end", "2022-06-30", "--cache-dir", str(tmp_path)]
    assert run(capsys, "fetch", *args)[0] == 0
    path = tmp_path / "yahoo-daily-adjusted" / "KO.npy"
    path.write_bytes(b"garbage")
    code, _, err = run(capsys, "fetch", *args)
    assert code == 2 and f"cache file {path} is unreadable" in one_error_line(err)
    assert path.read_bytes() == b"garbage"
    code, out, _ = run(capsys, "info", "--cache-dir", str(tmp_path), "--symbols", "KO")
    assert code == 0 and f"unreadable files (1, left in place): {path}" in out


@pytest.mark.parametrize("argv, message", [
    (["fetch", "--start", "2022-13-01"], "error: --start '2022-13-01' is not a date (YYYY-MM-DD)"),
    (["fetch", "--start", "2022-07-01", "--end", "2022-06-01"], "error: empty date range: --start 2022-07-01 is after --end 2022-06-01"),
    (["fetch", "--symbols", ",,", "--start", "2022-06-01"], "error: --symbols lists no symbols"),
    (["fetch", "--symbols", "A/B", "--start", "2022-06-01", "--end", "2022-06-30"], "error: invalid symbol 'A/B'"),
    (["fetch", "--batch-size", "0"], "error: --batch-size must be at least 1"),
    (["clear"], "error: one of the arguments --symbols --all is required"),
    (["frobnicate"], "error: argument command: invalid choice"),
])
def test_bad_input_is_one_line(stub, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, *argv, *(["--cache-dir", str(tmp_path)] if argv[0] != "frobnicate" else []))
    assert code == 2 and one_error_line(err).startswith(message)
    assert stub.all_requests == 0


@pytest.mark.parametrize("command", [["fetch", "--symbols", "KO", "--start", "2022-06-01"], ["info"], ["clear", "--all"]])
@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_cache_folder_under_a_file_is_bad_input(stub, tmp_path, capsys, monkeypatch, command, where):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    cache = blocker / "cache"
    if where == "environment":
        monkeypatch.setenv("PROPHETTREND_CACHE", str(cache))
    code, out, err = run(capsys, *command, *(["--cache-dir", str(cache)] if where == "flag" else []))
    assert code == 2 and f"{blocker} is a file, not a folder" in one_error_line(err)
    assert out == "" and stub.all_requests == 0 and blocker.read_text() == "mine"


def test_offline_environment_refuses_fetch(stub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROPHETTREND_OFFLINE", "1")
    code, _, err = run(capsys, "fetch", "--symbols", "KO", "--cache-dir", str(tmp_path))
    assert code == 2 and "PROPHETTREND_OFFLINE is set" in one_error_line(err)


def test_module_entry_point_help_and_errors():
    env_cmd = [sys.executable, "-m", "marketdata"]
    helped = subprocess.run([*env_cmd, "fetch", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--cache-dir" in helped.stdout and "--batch-size" in helped.stdout
    bad = subprocess.run([*env_cmd, "fetch", "--end", "yesterday"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr == "error: --end 'yesterday' is not a date (YYYY-MM-DD)\n"


# --- the S&P 500 snapshot ------------------------------------------------------------------------------------

def test_bundled_snapshot_has_date_source_and_sectors(tmp_path):
    universe = load_sp500(cache_dir=tmp_path)
    assert universe.snapshot_date == "2026-03-09" and "pytickersymbols 1.17.10" in universe.source
    assert 495 <= len(universe.symbols) <= 510 and len(set(universe.symbols)) == len(universe.symbols)
    assert set(universe.table["sector"]) == GICS
    assert {"AAPL", "MSFT", "BRK.B", "KO"} <= set(universe.symbols)
    assert "2026-03-09" in universe.survivorship_note and "survivorship bias" in universe.provenance()["survivorship_note"]


class _Page(http.server.BaseHTTPRequestHandler):
    status = 200
    body = (b"<html><body><table class='wikitable' id='constituents'><tr><th>Symbol</th><th>Security</th>"
            b"<th>GICS Sector</th><th>GICS Sub-Industry</th></tr>"
            b"<tr><td>MMM</td><td>3M</td><td>Industrials</td><td>x</td></tr>"
            b"<tr><td>BRK.B</td><td>Berkshire Hathaway</td><td>Financials</td><td>y</td></tr></table></body></html>")

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def page(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/wiki/List_of_S%26P_500_companies"
    server.shutdown()
    server.server_close()
    _Page.status = 200


def test_refresh_writes_a_dated_snapshot_that_is_then_preferred(page, tmp_path, capsys):
    code, out, _ = run(capsys, "universe", "--refresh", "--url", page, "--cache-dir", str(tmp_path))
    assert code == 0 and "refreshed: 2 symbols" in out
    universe = load_sp500(cache_dir=tmp_path)
    assert universe.symbols == ["BRK.B", "MMM"] and universe.path == str(refreshed_path(tmp_path))
    text = refreshed_path(tmp_path).read_text()
    assert "# snapshot_date: " in text and page in text
    assert load_sp500(cache_dir=tmp_path, prefer_refreshed=False).snapshot_date == "2026-03-09"


def test_failed_refresh_keeps_the_previous_snapshot(page, tmp_path, capsys):
    refresh_sp500(url=page, dest=refreshed_path(tmp_path))
    before = refreshed_path(tmp_path).read_text()
    _Page.status = 503
    code, _, err = run(capsys, "universe", "--refresh", "--url", page, "--cache-dir", str(tmp_path))
    assert code == 2 and "the previous snapshot is still used" in one_error_line(err)
    assert refreshed_path(tmp_path).read_text() == before
    with pytest.raises(DataError, match="cannot download"):
        refresh_sp500(url="http://127.0.0.1:9/nothing-listens-here", dest=tmp_path / "x.csv", timeout=5)


# --- python -m backtests.run --data yfinance ----------------------------------------------------------------

def test_backtest_on_yfinance_records_the_snapshot_and_the_bias(stub, tmp_path, capsys, monkeypatch):
    import dataclasses

    import marketdata.yahoo_cli_support as support
    from backtests.run import cli as backtest_cli

    # The bundled snapshot, cut to a few members (four the stub knows, two it does not) to keep the run short.
    full = load_sp500(prefer_refreshed=False)
    few = dataclasses.replace(full, table=full.table[full.table["symbol"].isin(["AAPL", "KO", "PG", "XOM", "NVDA", "META"])])
    monkeypatch.setattr(support, "load_sp500", lambda cache_dir=None: few)
    monkeypatch.setenv("PROPHETTREND_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = backtest_cli(["--data", "yfinance", "--start", "2022-12-01", "--end", "2022-12-28", "--history", "30",
                         "--lookback", "10", "--refit-every", "20", "--top-n", "2", "--no-plot", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0
    data = json.loads((out / "summary.json").read_text())["data"]
    assert data["universe_snapshot_date"] == "2026-03-09" and data["source"].startswith("yfinance")
    assert "survivorship bias" in data["survivorship_note"] and data["adjusted"] is True
    assert data["symbols_missing"] == {"unknown": ["META", "NVDA"]}  # the stub only knows the 20 sample stocks
    assert "note: survivorship bias: the universe is the S&P 500 membership as of 2026-03-09" in printed
    assert "universe: S&P 500 snapshot of 2026-03-09 (6 symbols)" in err and "2 symbol(s) left out" in err
    assert "4 symbols" in printed
    # The window was fetched from the warm-up start, not the whole history.
    first = min(r[1] for r in stub.ranges)
    assert "2022-08-01" <= first <= "2022-10-01"


def test_backtest_on_yfinance_with_an_unknown_symbol_is_one_line(stub, tmp_path, capsys, monkeypatch):
    from backtests.run import cli as backtest_cli

    monkeypatch.setenv("PROPHETTREND_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_:
        backtest_cli(["--data", "yfinance", "--symbols", "AAPL,ZZZZ", "--start", "2022-11-01", "--end", "2022-12-28",
                      "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert "ZZZZ (unknown or delisted on Yahoo)" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
