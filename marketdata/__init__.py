"""Where prices come from: the bundled sample, CSV files, and (see ``marketdata.yahoo``) yfinance with a cache.

Example:
    >>> from marketdata import load_sample
    >>> load_sample().closes.shape[1]
    20
"""

from marketdata.csvfile import load_csv
from marketdata.errors import DataError
from marketdata.prices import PriceData
from marketdata.provider import PriceProvider, open_provider
from marketdata.sample import load_sample, load_sample_index

__all__ = ["DataError", "PriceData", "load_csv", "load_sample", "load_sample_index", "open_provider", "PriceProvider"]
