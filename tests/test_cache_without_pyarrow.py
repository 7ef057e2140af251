"""The price cache's formats: numpy ``.npy`` files by default (they need no pyarrow, which the Lambda layer leaves
out, and read fastest), reading back exactly what Parquet and CSV files read back; files an earlier release wrote
in another format are still read, and replaced by the cache's own format when the symbol is next written."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deploy.layer import layer_roots
from marketdata.cache import CacheCorruptError, PriceCache

ROOT = Path(__file__).resolve().parent.parent


def _bars(intraday: bool) -> pd.DataFrame:
    index = (pd.date_range("2024-07-01 09:30", periods=5, freq="15min") if intraday
             else pd.bdate_range("2024-07-01", periods=5))
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 5)))  # full 17-digit doubles
    close[2] = np.nan
    return pd.DataFrame({"open": close * 0.999, "high": close * 1.01, "low": close / 1.01, "close": close,
                         "volume": np.arange(5, dtype="int64") * 1000}, index=index)


@pytest.mark.parametrize("interval", ["1d", "15m"])
def test_npy_and_csv_files_read_back_what_parquet_files_read_back(tmp_path, interval):
    bars = _bars(interval != "1d")
    covered = (dt.date(2024, 6, 29), dt.date(2024, 7, 5))
    read = {}
    for fmt in ("parquet", "csv", "npy"):
        cache = PriceCache(tmp_path / fmt, interval=interval, file_format=fmt)
        path = cache.write("BRK.B", bars, covered=covered, fetched_at="2024-07-06T00:00:00+00:00")
        assert path.suffix == "." + fmt and cache.symbols() == ["BRK.B"]
        read[fmt] = cache.read("BRK.B")
        assert cache.describe("BRK.B")["rows"] == 5
    for fmt in ("csv", "npy"):
        pd.testing.assert_frame_equal(read[fmt].bars, read["parquet"].bars, check_exact=True)
        assert read[fmt].covered == read["parquet"].covered == covered
        assert read[fmt].fetched_at == read["parquet"].fetched_at
    assert read["npy"].bars.index.dtype == bars.index.dtype  # the unit too: a file reads back what was written


def test_the_default_format_is_npy_and_a_file_of_an_earlier_release_is_read_then_replaced(tmp_path):
    bars = _bars(False)
    old = PriceCache(tmp_path, file_format="parquet")
    old.write("KO", bars, covered=(dt.date(2024, 6, 29), dt.date(2024, 7, 5)), fetched_at="2024-07-06T00:00:00+00:00")
    cache = PriceCache(tmp_path)
    assert cache.file_format == "npy" and cache.symbols() == ["KO"]
    legacy = cache.read("KO")
    assert legacy.path.suffix == ".parquet"
    pd.testing.assert_frame_equal(legacy.bars, old.read("KO").bars, check_exact=True)
    assert cache.describe("KO")["rows"] == 5 and cache.describe("KO")["path"].endswith("KO.parquet")
    more = pd.concat([legacy.bars, bars.set_axis(bars.index + pd.Timedelta(days=7))])
    cache.write("KO", more, covered=(dt.date(2024, 6, 29), dt.date(2024, 7, 12)), fetched_at="2024-07-13T00:00:00+00:00")
    assert sorted(p.name for p in cache.folder.iterdir()) == ["KO.npy"]  # one file per symbol, the new format
    assert len(cache.read("KO").bars) == 10 and cache.symbols() == ["KO"]
    old.write("PG", bars, covered=None, fetched_at="x")
    assert cache.clear(["KO", "PG"]) == 2 and list(cache.folder.iterdir()) == []


def test_reads_of_one_file_are_independent_of_each_other(tmp_path):
    """The cache remembers a file's columns per process; what a caller does to its frame stays its own."""
    cache = PriceCache(tmp_path)
    cache.write("KO", _bars(False), covered=None, fetched_at="x")
    first = cache.read("KO")
    first.bars.loc[first.bars.index[0], "close"] = -1.0
    first.bars["extra"] = 1
    again = cache.read("KO")
    assert again.bars["close"].iloc[0] > 0 and "extra" not in again.bars
    with pytest.raises(ValueError):
        again.columns.column("close")[0] = 0.0  # the remembered arrays are read-only


@pytest.mark.parametrize("damage", ["truncated", "header", "payload"])
def test_a_damaged_npy_file_is_refused_and_left_in_place(tmp_path, damage):
    cache = PriceCache(tmp_path)
    path = cache.write("KO", _bars(False), covered=None, fetched_at="2024-07-06T00:00:00+00:00")
    data = path.read_bytes()
    broken = {"truncated": data[: len(data) - 17], "header": b"garbage" + data,
              "payload": data.split(b"\n", 2)[0] + b"\n" + data.split(b"\n", 2)[1] + b"\nnot numpy"}[damage]
    path.write_bytes(broken)
    with pytest.raises(CacheCorruptError, match="unreadable"):
        cache.read("KO")
    assert path.read_bytes() == broken


def test_a_damaged_csv_file_is_refused_and_left_in_place(tmp_path):
    cache = PriceCache(tmp_path, file_format="csv")
    cache.write("KO", _bars(False), covered=None, fetched_at="2024-07-06T00:00:00+00:00")
    path = cache.path("KO")
    path.write_text(path.read_text()[:40])
    with pytest.raises(CacheCorruptError, match="unreadable"):
        cache.read("KO")
    assert path.exists()


def test_without_pyarrow_the_cache_works_and_nothing_imports_pyarrow(tmp_path):
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"  # as absent as in the layer: any import of it fails
        "import datetime as dt, pandas as pd\n"
        "from marketdata.cache import PriceCache\n"
        "c = PriceCache(sys.argv[1])\n"
        "bars = pd.DataFrame({'close': [1.5, 2.25]}, index=pd.bdate_range('2024-07-01', periods=2))\n"
        "p = c.write('AAA', bars, covered=(dt.date(2024, 7, 1), dt.date(2024, 7, 2)), fetched_at='x')\n"
        "print(c.file_format, p.name, c.read('AAA').bars['close'].tolist())\n"
        "import live.cycle, marketdata.yahoo, marketdata.alpaca_data\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyarrow') and sys.modules[m] is not None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["npy AAA.npy [1.5, 2.25]", "[]"]


def test_the_layer_leaves_pyarrow_out():
    roots = layer_roots(["pandas", "pyarrow", "numpy", "yfinance"])
    assert "pyarrow" not in roots and {"pandas", "numpy"} <= set(roots)
