"""Forecasts for the decision bar, fitted once per refit block and reused within it.

Example:
    >>> import numpy as np, pandas as pd
    >>> from strategies.params import StrategyParams
    >>> idx = pd.bdate_range("2022-01-03", periods=40)
    >>> closes = pd.DataFrame({"AAA": np.linspace(10, 14, 40)}, index=idx)
    >>> points = Forecaster(StrategyParams(history=20, refit_every=1)).forecasts(closes, ["AAA"])
    >>> bool(points["AAA"].yhat > closes["AAA"].iloc[-1])
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from strategies.engines import ForecastEngine, ForecastJob, ProphetSettings, make_engine
from strategies.engines.base import Forecast
from strategies.params import StrategyParams
from strategies.schedule import (forecast_date, forecast_dates, refit_anchor, session_axis, session_bar_numbers,
                                 session_bar_stamps)

_BAR_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}


@dataclass(frozen=True)
class ForecastPoint:
    """The forecast a decision uses: fitted on closes up to ``anchor``, read at ``target`` (as_of + horizon)."""

    symbol: str
    anchor: pd.Timestamp
    target: pd.Timestamp
    yhat: float
    trend: float


def settings_for(params: StrategyParams) -> ProphetSettings:
    return ProphetSettings(
        changepoint_prior_scale=params.changepoint_prior_scale,
        yearly_seasonality=params.yearly_seasonality,
        weekly_seasonality=params.weekly_seasonality,
        # On real clock times an intraday fit needs the day's shape; on the session axis there is no clock.
        daily_seasonality=params.bar != "1d" and params.intraday_model == "clock",
    )


class Forecaster:
    """Fits the engine on each symbol's last ``history`` closes up to the refit bar and caches the result.

    The cache is keyed by (symbol, refit bar); only the current block's fits are kept, so memory stays flat over
    a long backtest. ``fits`` counts the engine fits made, for progress and benchmarks.
    """

    def __init__(self, params: StrategyParams, engine: ForecastEngine | None = None) -> None:
        self.params = params
        self.engine = engine or make_engine(params.engine, settings_for(params))
        self._cache: dict[tuple[str, pd.Timestamp], Forecast] = {}
        self._anchor: pd.Timestamp | None = None
        self.fits = 0
        self.fallbacks = 0  # intraday fits the exact engine handed to stan (counted, reported by the benchmark)

    def forecasts(self, closes: pd.DataFrame, symbols: list[str]) -> dict[str, ForecastPoint]:
        """Forecast points for those ``symbols`` that have ``history`` closes up to the refit bar."""
        p = self.params
        if p.bar != "1d":
            return self._intraday(closes, symbols)
        anchor_pos = refit_anchor(closes.index, p.refit_every)
        anchor = closes.index[anchor_pos]
        target = forecast_date(closes.index[-1], p.horizon)
        if anchor != self._anchor:
            self._cache = {k: v for k, v in self._cache.items() if k[1] == anchor}
            self._anchor = anchor
        jobs = []
        todo = [symbol for symbol in symbols if (symbol, anchor) not in self._cache]
        if todo:
            # Positions into one numpy copy of the window, as the intraday path does, not a pandas slice and dropna
            # per symbol: the same rows and values (the last non-missing close must be the anchor's).
            columns = closes.columns.get_indexer(todo)
            values = closes.to_numpy(dtype=np.float64, copy=False)[: anchor_pos + 1]
            stamps = pd.DatetimeIndex(closes.index)
            future = forecast_dates(anchor, p.horizon, p.refit_every)
            for symbol, column in zip(todo, columns):
                if column < 0:
                    raise KeyError(symbol)
                column_values = values[:, column]
                rows = np.flatnonzero(~np.isnan(column_values))
                if len(rows) < p.history or rows[-1] != anchor_pos:
                    continue
                rows = rows[-p.history:]
                jobs.append(ForecastJob(symbol, stamps[rows], column_values[rows], future))
        if jobs:
            for job, result in zip(jobs, self.engine.fit_predict_many(jobs)):
                self._cache[(job.key, anchor)] = result
            self.fits += len(jobs)
        points = {}
        where: dict[int, int] = {}  # the target's position per future axis (a block's fits share one axis)
        for symbol in symbols:
            forecast = self._cache.get((symbol, anchor))
            if forecast is None:
                continue
            key = id(forecast.future)
            if key not in where:
                where[key] = int(forecast.future.get_indexer([target])[0])
            position = where[key]
            if position < 0:  # cannot happen with forecast_dates' range; fail loudly rather than guess
                raise RuntimeError(f"no forecast for {symbol} at {target.date()} from the fit at {anchor.date()}")
            points[symbol] = ForecastPoint(symbol, anchor, target, float(forecast.yhat[position]),
                                           float(forecast.trend[position]))
        return points

    def _intraday(self, closes: pd.DataFrame, symbols: list[str]) -> dict[str, ForecastPoint]:
        """Intraday bars: refit blocks, horizon and targets in session bars (``strategies.schedule``)."""
        p = self.params
        minutes = _BAR_MINUTES[p.bar]
        numbers = session_bar_numbers(pd.DatetimeIndex(closes.index), minutes)
        blocks = numbers // p.refit_every
        anchor_pos = int(np.searchsorted(blocks, blocks[-1], side="left"))
        anchor = pd.Timestamp(closes.index[anchor_pos])
        target_number = int(numbers[-1]) + p.horizon
        block = int(blocks[-1])
        future_numbers = np.arange(block * p.refit_every + p.horizon, (block + 1) * p.refit_every + p.horizon)
        if p.intraday_model == "session":
            future = session_axis(future_numbers)
            target_ds = session_axis(np.array([target_number]))[0]
        else:
            future = session_bar_stamps(future_numbers, minutes)
            target_ds = future[int(np.searchsorted(future_numbers, target_number))]
        target = session_bar_stamps(np.array([target_number]), minutes)[0]
        if anchor != self._anchor:
            self._cache = {k: v for k, v in self._cache.items() if k[1] == anchor}
            self._anchor = anchor
        # Positions into one numpy copy of the window, not a pandas slice per symbol: the same rows and values
        # (the last non-missing close must be the anchor's; then the last ``history`` of them, or today's).
        columns = closes.columns.get_indexer(symbols)
        values = closes.to_numpy(dtype=np.float64, copy=False)[: anchor_pos + 1]
        stamps = pd.DatetimeIndex(closes.index)
        axis = session_axis(numbers) if p.intraday_model == "session" else stamps
        days = stamps.normalize() if p.today_only else None
        jobs = []
        for symbol, column in zip(symbols, columns):
            if (symbol, anchor) in self._cache:
                continue
            if column < 0:
                raise KeyError(symbol)
            column_values = values[:, column]
            rows = np.flatnonzero(~np.isnan(column_values))
            if len(rows) == 0 or rows[-1] != anchor_pos:
                continue
            if p.today_only:  # the seed's variant: this session's bars only
                rows = rows[days[rows] == anchor.normalize()][-p.history:]
                if len(rows) < 10:
                    continue
            elif len(rows) < p.history:
                continue
            else:
                rows = rows[-p.history:]
            jobs.append(ForecastJob(symbol, axis[rows], column_values[rows], future))
        if jobs:
            for job, result in zip(jobs, self.engine.fit_predict_many(jobs)):
                self._cache[(job.key, anchor)] = result
                if result.info.get("path") == "stan-fallback":
                    self.fallbacks += 1
            self.fits += len(jobs)
        points = {}
        where: dict[int, int] = {}  # the target's position per future axis (a block's fits share one axis)
        for symbol in symbols:
            forecast = self._cache.get((symbol, anchor))
            if forecast is None:
                continue
            key = id(forecast.future)
            if key not in where:
                where[key] = int(forecast.future.get_indexer([target_ds])[0])
            position = where[key]
            if position < 0:
                raise RuntimeError(f"no forecast for {symbol} at {target} from the fit at {anchor}")
            points[symbol] = ForecastPoint(symbol, anchor, target, float(forecast.yhat[position]),
                                           float(forecast.trend[position]))
        return points
