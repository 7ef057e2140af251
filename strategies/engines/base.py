"""What a forecast engine is: fit Prophet's model on one series and read its forecast at given dates.

Engines may keep state between calls (e.g. warm starts keyed by symbol); results must not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ProphetSettings:
    """The Prophet model the strategy fits. Only settings the strategy exposes; the rest are Prophet's defaults."""

    changepoint_prior_scale: float = 0.05
    yearly_seasonality: bool = False
    weekly_seasonality: bool = False
    daily_seasonality: bool = False
    n_changepoints: int = 25
    changepoint_range: float = 0.8
    seasonality_prior_scale: float = 10.0

    def prophet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``prophet.Prophet`` that reproduce these settings exactly."""
        return {
            "growth": "linear",
            "changepoint_prior_scale": self.changepoint_prior_scale,
            "yearly_seasonality": self.yearly_seasonality,
            "weekly_seasonality": self.weekly_seasonality,
            "daily_seasonality": self.daily_seasonality,
            "n_changepoints": self.n_changepoints,
            "changepoint_range": self.changepoint_range,
            "seasonality_prior_scale": self.seasonality_prior_scale,
            "uncertainty_samples": 0,
        }


@dataclass(frozen=True)
class ForecastJob:
    """One fit: ``key`` names the series (the symbol) so an engine can warm-start from its previous fit."""

    key: str
    ds: pd.DatetimeIndex
    y: np.ndarray
    future: pd.DatetimeIndex


@dataclass(frozen=True)
class Forecast:
    """Point forecast ``yhat`` and its ``trend`` component at ``future`` dates."""

    future: pd.DatetimeIndex
    yhat: np.ndarray
    trend: np.ndarray
    engine: str
    info: dict[str, Any] = field(default_factory=dict)

    def at(self, date: pd.Timestamp) -> tuple[float, float] | None:
        position = self.future.get_indexer([date])[0]
        if position < 0:
            return None
        return float(self.yhat[position]), float(self.trend[position])


class ForecastEngine(Protocol):
    name: str

    def fit_predict_many(self, jobs: list[ForecastJob]) -> list[Forecast]:
        """Fit every job (in any order, possibly together) and return forecasts in the order of ``jobs``."""
        ...
