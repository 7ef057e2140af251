"""The Yahoo provider's windows and wide frames come from the cache's numpy columns, not from per-symbol
DataFrames: they must give what the DataFrame path gives, for symbols that do not share their dates, missing and
non-positive closes, and each cache format (the live cycle trades on these prices)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketdata.cache import PriceCache
from marketdata.yahoo import YahooProvider

START, END = dt.date(2022, 6, 2), dt.date(2022, 6, 27)


def _symbols() -> dict[str, pd.DataFrame]:
    days = pd.bdate_range("2022-05-02", "2022-06-30")
    rng = np.random.default_rng(7)

    def bars(index) -> pd.DataFrame:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(index))))
        return pd.DataFrame({"open": close * 1.001, "high": close * 1.02, "low": close * 0.98, "close": close,
                             "volume": np.arange(len(index), dtype="int64")}, index=index)

    full = bars(days)
    late = bars(days[days >= "2022-06-09"])            # listed inside the window
    holes = bars(days).drop(days[[25, 26, 30]])          # days missing in the file
    bad = bars(days)
    bad.iloc[24, bad.columns.get_loc("close")] = np.nan  # a missing close is not a bar
    bad.iloc[28, bad.columns.get_loc("close")] = 0.0     # nor is a zero one
    bad.iloc[29, bad.columns.get_loc("open")] = -1.0     # a bad open is dropped, the bar kept
    return {"FULL": full, "LATE": late, "HOLES": holes, "BAD": bad}


def _expected(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """What the pandas path built (marketdata.yahoo before the columns): windows, union of dates, reindexed."""
    windows = {}
    for s, f in frames.items():
        w = f[(f.index >= pd.Timestamp(START)) & (f.index < pd.Timestamp(END + dt.timedelta(days=1)))]
        windows[s] = w[w["close"] > 0]
    closes = pd.DataFrame({s: w["close"] for s, w in windows.items()})
    out = {"closes": closes}
    for name in ("open", "high", "low"):
        frame = pd.DataFrame({s: w[name] for s, w in windows.items()}).reindex(closes.index)
        out[name + "s"] = frame.where(frame > 0)
    return out


@pytest.mark.parametrize("file_format", ["npy", "parquet", "csv"])
def test_windows_from_the_cache_columns_equal_the_dataframe_path(tmp_path, file_format):
    frames = _symbols()
    cache = PriceCache(tmp_path, file_format=file_format)
    for s, f in frames.items():
        cache.write(s, f, covered=(dt.date(2022, 5, 1), dt.date(2022, 6, 30)), fetched_at="2022-07-01T00:00:00+00:00")
    provider = YahooProvider(tmp_path, offline=True)
    provider.cache.file_format = file_format
    data = provider.history(list(frames), end=END, start=START, strict=False)
    expected = _expected({s: cache.read(s).bars for s in frames})
    assert data.symbols == list(frames)
    got = {"closes": data.closes, "opens": data.opens, "highs": data.highs, "lows": data.lows}
    for name, frame in expected.items():
        want = frame.copy()
        want.index = pd.DatetimeIndex(want.index).as_unit("ns").rename(got[name].index.name)
        # PriceData fills a missing high or low from the open and close, and a missing open is left missing
        if name in ("highs", "lows"):
            fill = np.fmax if name == "highs" else np.fmin
            want = want.where(want.notna(), fill(got["opens"].fillna(got["closes"]), got["closes"]))
        pd.testing.assert_frame_equal(got[name], want, check_exact=True, check_freq=False, check_names=False)
    assert data.closes.loc["2022-06-08", "LATE"] != data.closes.loc["2022-06-08", "LATE"]  # NaN before listing
    assert np.isnan(data.closes["BAD"]).sum() == 2 and np.isnan(data.opens["BAD"]).sum() == 3


def test_the_formats_give_the_same_prices_to_the_bit(tmp_path):
    frames = _symbols()
    seen = []
    for file_format in ("npy", "parquet", "csv"):
        root = tmp_path / file_format
        cache = PriceCache(root, file_format=file_format)
        for s, f in frames.items():
            cache.write(s, f, covered=(dt.date(2022, 5, 1), dt.date(2022, 6, 30)), fetched_at="x")
        seen.append(YahooProvider(root, offline=True).history(list(frames), end=END, bars=12, strict=False))
    for other in seen[1:]:
        for name in ("closes", "opens", "highs", "lows"):
            pd.testing.assert_frame_equal(getattr(other, name), getattr(seen[0], name), check_exact=True)
        assert other.provenance["content_hash"] == seen[0].provenance["content_hash"]
