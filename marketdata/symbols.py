"""What a ticker may look like, and how every provider names the symbols it had to leave out.

A junk symbol (empty, or with characters no ticker has) and a symbol the source does not know are not an error in
a lenient (``strict=False``) request: they are dropped and listed in ``provenance["symbols_missing"]`` under the
same reasons whatever the provider (``invalid``, ``unknown``, plus the source's own, e.g. ``rate_limited``); only a
request with nothing left is an error.

Example:
    >>> split_symbols(["aapl", " KO ", "", "A/B", "AAPL", "brk.b"])
    (['AAPL', 'KO', 'BRK.B'], ['', 'A/B'])
    >>> describe_missing({"invalid": ["", "A/B"], "unknown": ["ZZZZ"]})
    "invalid symbol(s) '', 'A/B'; unknown symbol(s) ZZZZ"
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable

from marketdata.prices import PriceData

INVALID = "invalid"  # empty, or characters no ticker has
UNKNOWN = "unknown"  # well-formed, but the source has no such symbol
# Tickers, class shares (BRK.B), indices (^GSPC), futures and currencies (ES=F, EURUSD=X): the cache's file names.
SYMBOL = re.compile(r"^[A-Z0-9^][A-Z0-9.\-^=]{0,19}$")


def is_valid_symbol(symbol: str) -> bool:
    """Whether ``symbol`` (already stripped and upper-cased) can be a ticker.

    >>> is_valid_symbol("BRK.B"), is_valid_symbol("^GSPC"), is_valid_symbol("BRK B"), is_valid_symbol("")
    (True, True, False, False)
    """
    return bool(SYMBOL.match(symbol))


def split_symbols(symbols: Iterable[str]) -> tuple[list[str], list[str]]:
    """The well-formed symbols (stripped, upper-cased, first occurrence kept, in order) and the junk ones."""
    valid: dict[str, None] = {}
    junk: dict[str, None] = {}
    for raw in symbols:
        symbol = str(raw).strip().upper()
        (valid if is_valid_symbol(symbol) else junk).setdefault(symbol, None)
    return list(valid), list(junk)


def describe_missing(missing: dict[str, list[str]]) -> str:
    """One line naming the left-out symbols by reason (junk ones quoted, so an empty one shows)."""
    parts = []
    for reason, symbols in missing.items():
        names = [repr(s) if reason == INVALID else s for s in symbols]
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        parts.append(f"{reason} symbol(s) {shown}")
    return "; ".join(parts)


def with_missing(data: PriceData, missing: dict[str, list[str]]) -> PriceData:
    """``data`` with ``missing`` (reason -> symbols) merged into ``provenance["symbols_missing"]``."""
    merged: dict[str, list[str]] = {k: list(v) for k, v in (data.provenance.get("symbols_missing") or {}).items()}
    for reason, symbols in missing.items():
        if symbols:
            merged[reason] = merged.get(reason, []) + [s for s in symbols if s not in merged.get(reason, [])]
    return replace(data, provenance={**data.provenance, "symbols_missing": merged})
