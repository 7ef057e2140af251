"""The price cache without pyarrow (as in the Lambda layer, which leaves its 79 MB out): CSV files that read back
exactly what Parquet files read back, chosen by default where pyarrow cannot be imported."""

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
def test_csv_files_read_back_what_parquet_files_read_back(tmp_path, interval):
    bars = _bars(interval != "1d")
    covered = (dt.date(2024, 6, 29), dt.date(2024, 7, 5))
    read = {}
    for fmt in ("parquet", "csv"):
        cache = PriceCache(tmp_path / fmt, interval=interval, file_format=fmt)
        path = cache.write("BRK.B", bars, covered=covered, fetched_at="2024-07-06T00:00:00+00:00")
        assert path.suffix == "." + fmt and cache.symbols() == ["BRK.B"]
        read[fmt] = cache.read("BRK.B")
        assert cache.describe("BRK.B")["rows"] == 5
    pd.testing.assert_frame_equal(read["csv"].bars, read["parquet"].bars, check_exact=True)
    assert read["csv"].covered == read["parquet"].covered == covered
    assert read["csv"].fetched_at == read["parquet"].fetched_at


def test_a_damaged_csv_file_is_refused_and_left_in_place(tmp_path):
    cache = PriceCache(tmp_path, file_format="csv")
    cache.write("KO", _bars(False), covered=None, fetched_at="2024-07-06T00:00:00+00:00")
    path = cache.path("KO")
    path.write_text(path.read_text()[:40])
    with pytest.raises(CacheCorruptError, match="unreadable"):
        cache.read("KO")
    assert path.exists()


def test_without_pyarrow_the_cache_is_csv_and_nothing_imports_pyarrow(tmp_path):
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
    assert done.stdout.splitlines() == ["csv AAA.csv [1.5, 2.25]", "[]"]


def test_the_layer_leaves_pyarrow_out():
    roots = layer_roots(["pandas", "pyarrow", "numpy", "yfinance"])
    assert "pyarrow" not in roots and {"pandas", "numpy"} <= set(roots)
