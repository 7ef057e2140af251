"""The parts a cycle talks to, built from the configuration: price provider, universe, broker and journal.

Optional parts are imported lazily (the yfinance provider, alpaca-py, boto3), so a paper cycle on the bundled
sample needs none of them.

Example:
    >>> from live.config import LiveConfig
    >>> cfg = LiveConfig.from_env({"STATE_DIR": "/tmp/pt-doc"})
    >>> make_provider(cfg).name, len(candidate_universe(cfg))
    ('sample', 20)
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from live.config import ConfigError, LiveConfig
from live.secrets import AlpacaKeys


def make_provider(config: LiveConfig, keys: AlpacaKeys | None = None, env: Mapping[str, str] | None = None):
    """The ``PriceProvider`` named by ``MARKET_DATA``, opened as the backtest opens ``--data``.

    ``MARKET_DATA=alpaca`` uses the trading keys (``keys``, from wherever the cycle loaded them: environment,
    Secrets Manager or SSM) and the cycle's ``env`` for ``APCA_API_DATA_URL`` / ``APCA_DATA_FEED``, so one
    Alpaca account serves prices and trading."""
    from marketdata.errors import DataError
    from marketdata.provider import open_provider

    try:
        if config.market_data == "alpaca" and keys is not None:
            from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider

            settings = {**(env or {}), "APCA_API_KEY_ID": keys.key_id, "APCA_API_SECRET_KEY": keys.secret_key}
            provider = AlpacaDataProvider(AlpacaDataConfig.from_env(settings), cache_dir=config.cache_dir)
        else:
            provider = open_provider(config.market_data, cache_dir=config.cache_dir)
        check_universe(config.universe, provider, config.universe_source)
        if config.universe and config.universe != ("SP500",) and getattr(provider, "data", None) is None:
            return ListedUniverse(provider, config.universe, config.universe_source)
        return provider
    except ModuleNotFoundError as exc:
        raise ConfigError(f"MARKET_DATA={config.market_data} is not available in this build ({exc.name} is missing)") from None
    except DataError as exc:
        raise ConfigError(f"MARKET_DATA: {exc}") from None


def check_universe(universe: tuple[str, ...] | None, provider, label: str = "UNIVERSE") -> None:
    """Refuse, before any order, a listed symbol that a fixed set of prices (the sample, a CSV file) does not
    have: the backtest refuses it too (``PriceData.select``). Sources that fetch on demand (yfinance, Alpaca)
    are only checked when they answer, and ``sp500`` is the bundled snapshot, whose delisted members are skipped
    and named by the cycle.

    >>> from marketdata.provider import open_provider
    >>> check_universe(("KO", "PG"), open_provider("sample"))
    >>> check_universe(("KO", "NOPE"), open_provider("sample"))
    Traceback (most recent call last):
    ...
    live.config.ConfigError: UNIVERSE: unknown symbol(s) NOPE: sample has no prices for them (it has AAPL, AMD, ...)
    """
    data = getattr(provider, "data", None)  # a FrameProvider holds its whole symbol set
    if not universe or universe == ("SP500",) or data is None:
        return
    unknown = [s for s in universe if s not in data.closes.columns]
    if unknown:
        have = ", ".join(data.symbols[:2]) + (", ..." if len(data.symbols) > 2 else "")
        raise ConfigError(f"{label}: unknown symbol(s) {', '.join(unknown)}: {provider.name} has no prices for "
                          f"them (it has {have})")


class ListedUniverse:
    """A source that fetches on demand (yfinance, Alpaca), refusing a listed universe symbol it does not know.

    It can tell only when it answers: a symbol the source reports unknown (``marketdata.symbols.UNKNOWN``) is a
    configuration error, as the backtest's strict load refuses it, raised by the history request before the
    decision, so no order is made. Symbols it could not fetch for another reason (rate limits, an outage) and
    holdings outside the universe stay lenient: skipped and named, as before."""

    def __init__(self, provider, universe: tuple[str, ...], label: str = "UNIVERSE") -> None:
        self._provider, self._universe, self._label = provider, set(universe), label

    def __getattr__(self, name: str):
        if name.startswith("_"):  # never look up our own fields on the provider (copy, pickle)
            raise AttributeError(name)
        return getattr(self._provider, name)

    def history(self, symbols, *args, **kwargs):
        from marketdata.errors import DataError
        from marketdata.symbols import UNKNOWN

        try:
            data = self._provider.history(symbols, *args, **kwargs)
        except DataError as exc:
            # nothing could be loaded: name the listed symbols among the unknown ones, if that is why
            if "unknown" in str(exc) and any(s in str(exc) for s in self._universe):
                raise ConfigError(f"{self._label}: {exc}") from None
            raise
        unknown = [s for s in (data.provenance.get("symbols_missing") or {}).get(UNKNOWN, []) if s in self._universe]
        if unknown:
            raise ConfigError(f"{self._label}: unknown symbol(s) {', '.join(unknown)}: {self._provider.name} has "
                              f"no prices for them")
        return data


def candidate_universe(config: LiveConfig) -> list[str]:
    """``UNIVERSE`` (comma-separated, or ``sp500`` for the bundled S&P 500 snapshot); default: the sample's symbols."""
    if config.universe == ("SP500",):
        from marketdata.universe import load_sp500

        return load_sp500().symbols
    if config.universe:
        return list(config.universe)
    from marketdata.sample import load_sample

    return load_sample().symbols


def make_broker(config: LiveConfig, provider, now: dt.datetime | None, keys: AlpacaKeys | None,
                env: Mapping[str, str]):
    """The paper broker (replaying ``now`` if given) or Alpaca with ``keys``."""
    if config.broker == "paper":
        from brokers.paper import PaperBroker

        return PaperBroker(config.paper_db, provider, now=now, cash=config.paper_cash,
                           execution=config.execution, bar=config.bar)
    from brokers.alpaca import AlpacaBroker  # lazy: alpaca-py costs import time and is not needed on paper

    merged = {"APCA_PAPER": "true" if config.alpaca_paper else "false",
              "APCA_API_BASE_URL": env.get("APCA_API_BASE_URL", ""),
              "APCA_API_KEY_ID": keys.key_id if keys else "", "APCA_API_SECRET_KEY": keys.secret_key if keys else ""}
    return AlpacaBroker.from_env(merged)
