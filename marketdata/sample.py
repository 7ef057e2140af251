"""The bundled sample: real adjusted daily closes of 20 S&P 500 members and the index, 1990 to 2022.

Source and licence: ``marketdata/data/ATTRIBUTION.md``.

Example:
    >>> data = load_sample()
    >>> data.symbols[:3], data.closes.index[-1].date().isoformat()
    (['AAPL', 'AMD', 'BAC'], '2022-12-28')
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from marketdata.prices import PriceData

SAMPLE_SOURCE = "bundled sample (skfolio 1.12.2 datasets, adjusted closes)"


def _read(name: str) -> pd.DataFrame:
    with resources.files("marketdata").joinpath("data", name).open("rb") as handle:
        return pd.read_csv(handle, compression="gzip", parse_dates=["Date"], index_col="Date")


@lru_cache(maxsize=1)
def load_sample() -> PriceData:
    """Adjusted closes of the 20 bundled stocks (closes only: no open, high, low or volume)."""
    return PriceData.from_closes(
        _read("sp500_dataset.csv.gz"),
        source=SAMPLE_SOURCE,
        adjusted=True,
        fetched_at="2022-12-28T00:00:00+00:00",
        origin="the bundled sample",
    )


@lru_cache(maxsize=1)
def load_sample_index() -> pd.Series:
    """The S&P 500 index close on the sample's dates, named ``SP500``."""
    frame = _read("sp500_index.csv.gz")
    series = frame["SP500"].astype("float64")
    series.index = pd.DatetimeIndex(series.index).normalize()
    series.index.name = "date"
    return series
