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
