"""Load the closes a decision needs: universe plus holdings, the backtest's window, up to the trading date.

Example:
    >>> import datetime as dt
    >>> from marketdata.provider import SampleProvider
    >>> from strategies import ProphetTrend
    >>> strategy = ProphetTrend(history=60, refit_every=5)
    >>> h = load_history(SampleProvider(), ["KO", "PG"], ["AAPL"], dt.date(2022, 6, 1), dt.date(2022, 5, 31), strategy)
    >>> h.data.symbols, len(h.data), h.data.closes.index[-1].date().isoformat(), h.unpriced
    (['KO', 'PG', 'AAPL'], 69, '2022-06-01', [])
    >>> load_history(SampleProvider(), ["KO", "GONE"], ["HELD"], dt.date(2022, 6, 1), dt.date(2022, 5, 31),
    ...              strategy).unavailable
    ['GONE']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from marketdata.errors import DataError
from marketdata.prices import PriceData
from strategies.base import Strategy, decision_window


@dataclass(frozen=True)
class History:
    data: PriceData
    unpriced: list[str] = field(default_factory=list)  # held symbols the provider cannot price (left alone)
    unavailable: list[str] = field(default_factory=list)  # universe symbols the provider cannot serve (skipped)


def load_history(provider, universe: list[str], held: list[str], trading_date: dt.date,
                 previous_session: dt.date, strategy: Strategy, at: dt.datetime | None = None) -> History:
    """Closes of ``universe`` + ``held`` up to ``trading_date``, the strategy's decision window (the rows the
    backtest hands it, ``strategies.decision_window``); refuses data older than ``previous_session``.

    A strategy on intraday bars (its ``bar``, e.g. ``15m``) gets the bars complete at ``at`` (the slot), no later."""
    extra = [s for s in held if s not in universe]
    bar = str(getattr(strategy, "bar", "1d") or "1d")
    window = {"end": trading_date} if bar == "1d" else {"end": at or trading_date, "interval": bar}
    # A symbol the provider cannot serve (delisted, renamed, bought by hand) must not stop the whole cycle: the
    # rest is decided on, and what was dropped is named in the provenance and the log.
    data = provider.history(universe + extra, bars=decision_window(strategy), strict=False, **window)
    priced = set(data.symbols)
    unpriced = [s for s in held if s not in priced]
    unavailable = [s for s in universe if s not in priced]
    last = data.closes.index[-1].date()
    if last < previous_session:
        raise DataError(f"stale prices: {provider.name} data end on {last}, but the trading date is {trading_date} "
                        f"(the last complete session was {previous_session}); replay a moment inside the data "
                        f"with --now or event['now'], or use fresher data (MARKET_DATA)")
    return History(data, unpriced, unavailable)
