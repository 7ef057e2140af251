"""A second shipped strategy, proof that the contract is general: a moving-average crossover.

Hold, in equal weights, the symbols whose fast moving average of closes is above their slow one (at most
``max_names`` of them, strongest crossover first); sell a holding once its fast average falls below the slow one.
It returns target weights and leaves orders, sizing, limits and stops to the shared rulebook.

Example:
    >>> import numpy as np, pandas as pd
    >>> idx = pd.bdate_range("2022-01-03", periods=30)
    >>> closes = pd.DataFrame({"UP": np.linspace(10, 20, 30), "DOWN": np.linspace(20, 10, 30)}, index=idx)
    >>> MovingAverageCrossover(fast=5, slow=20).decide(closes, {}, 10_000.0)
    {'UP': 0.95}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from strategies.base import Position, Strategy


@dataclass(frozen=True)
class CrossoverParams:
    """``fast`` and ``slow`` windows in bars; ``max_names`` held at once; ``invest`` is the share of equity used."""

    fast: int = 20
    slow: int = 50
    max_names: int = 5
    invest: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError(f"fast must be at least 1 and below slow, got fast={self.fast}, slow={self.slow}")
        if self.max_names < 1:
            raise ValueError(f"max_names must be at least 1, got {self.max_names}")
        if not 0 < self.invest <= 1:
            raise ValueError(f"invest must be a fraction in (0, 1], got {self.invest}")


class MovingAverageCrossover(Strategy):
    name = "ma-crossover"
    Params = CrossoverParams

    @property
    def warmup_bars(self) -> int:  # type: ignore[override]
        return self.params.slow

    def decide(self, closes: pd.DataFrame, positions: Mapping[str, Position], cash: float) -> dict[str, float]:
        p = self.params
        recent = closes.iloc[-p.slow:]
        full = recent.notna().all() & (len(recent) >= p.slow)
        fast = recent.iloc[-p.fast:].mean()
        slow = recent.mean()
        spread = (fast / slow - 1.0)[full & np.isfinite(recent.iloc[-1])]
        rising = spread[spread > 0]
        # Holdings that still cross up keep their place, so the book does not churn between equal candidates.
        held = [s for s in rising.index if s in positions and positions[s].qty > 0]
        fresh = [s for s in sorted(rising.index, key=lambda s: (-rising[s], s)) if s not in held]
        chosen = sorted((held + fresh)[: p.max_names])
        if not chosen:
            return {}
        weight = p.invest / len(chosen)
        return {s: weight for s in chosen}
