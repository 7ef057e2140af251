"""Shared settings for the live-cycle tests: a small universe and short Prophet histories, so cycles are fast."""

from __future__ import annotations

from pathlib import Path

SYMBOLS = ["KO", "PG", "JNJ", "PEP", "MRK"]
SLOT = "2022-06-01T15:45:00-04:00"  # a Wednesday, inside the sample, 15 minutes before the close


def live_env(state_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for ``run(env=...)``: paper broker, files under ``state_dir``, no limits in the way."""
    env = {
        "STATE_DIR": str(state_dir),
        "UNIVERSE": ",".join(SYMBOLS),
        "STRATEGY_TOP_N": "3",
        "STRATEGY_LOOKBACK": "20",
        "STRATEGY_HISTORY": "60",
        "STRATEGY_REFIT_EVERY": "5",
        "MAX_ORDER_NOTIONAL": "none",
        "MAX_POSITIONS": "none",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def stub_at_slot(stub, symbols, *, fill: bool) -> None:
    """Put the Alpaca stub's clock at ``SLOT`` with the sample's closes of that day as its prices.

    ``fill``: market orders fill at once while the market is open (the stub's default is to leave them new).
    """
    from marketdata.provider import SampleProvider

    day = SampleProvider().data.closes.loc[SLOT[:10]]
    stub.state.set_now(SLOT)
    stub.state.prices.update({s: float(day[s]) for s in symbols})
    stub.state.fill_market_orders = fill
