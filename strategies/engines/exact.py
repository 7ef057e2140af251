"""The ``exact`` engine: Prophet's own MAP problem solved exactly in numpy, warm-started per symbol.

Same model as :class:`~strategies.engines.stan.StanEngine` (Prophet's scaling, changepoints, Fourier features and
priors, reproduced bit for bit by ``_design``), but the maximum a posteriori estimate is computed by an exact
active-set method (``_solver``) instead of Stan's L-BFGS, so it reaches a log posterior at least as high as Stan's
and costs well under a millisecond per refit once warm. Anything outside that model (settings it does not handle,
fewer rows than parameters, unsorted dates, missing values, a failed optimality check) is handed to stock Prophet;
``Forecast.info["path"]`` says which way each job went.

Example:
    >>> import numpy as np, pandas as pd
    >>> ds = pd.bdate_range("2021-01-04", periods=60)
    >>> job = ForecastJob("X", ds, np.linspace(10, 20, 60), pd.bdate_range("2021-04-01", periods=2))
    >>> forecast = ExactEngine(ProphetSettings()).fit_predict_many([job])[0]
    >>> forecast.info["path"], round(float(forecast.yhat[0]), 1) > 20
    ('exact', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from strategies.engines._design import Design, build_design
from strategies.engines._solver import MapFit, SolverError, WarmStart, solve_map
from strategies.engines.base import Forecast, ForecastJob, ProphetSettings

# Prophet keyword arguments this engine reproduces, with the values it accepts (None: any positive number).
_SUPPORTED: dict[str, tuple[Any, ...] | None] = {
    "growth": ("linear",),
    "changepoint_prior_scale": None,
    "yearly_seasonality": (True, False),
    "weekly_seasonality": (True, False),
    "daily_seasonality": (True, False),
    "n_changepoints": None,
    "changepoint_range": None,
    "seasonality_prior_scale": None,
    "uncertainty_samples": (0,),
}
KKT_TOLERANCE = 1e-8  # relative; exact solutions sit near 1e-12, Stan's L-BFGS stops near 1e-3


def unsupported_reason(settings: ProphetSettings) -> str | None:
    """Why ``settings`` need stock Prophet, or None when the exact engine reproduces them.

    Example:
        >>> unsupported_reason(ProphetSettings()) is None
        True
    """
    kwargs = settings.prophet_kwargs()
    for key, value in kwargs.items():
        if key not in _SUPPORTED:
            return f"setting {key}={value!r} is not handled by the exact engine"
        allowed = _SUPPORTED[key]
        if allowed is None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                return f"setting {key}={value!r} is not a positive number"
        elif not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            return f"setting {key}={value!r} is not handled by the exact engine"
    if not kwargs["changepoint_range"] <= 1 or int(kwargs["n_changepoints"]) != kwargs["n_changepoints"]:
        return "changepoint_range must be in (0, 1] and n_changepoints a whole number"
    return None


class ExactEngine:
    """Fits every job with the exact MAP solver, keeping each series' active set and noise scale as a warm start.

    Warm starts only choose the starting point: the solver runs to the same unique optimum from any start (the
    tests compare warm and cold fits), so results do not depend on call order.
    """

    name = "exact"

    def __init__(self, settings: ProphetSettings) -> None:
        self.settings = settings
        self.unsupported = unsupported_reason(settings)
        self._warm: dict[str, WarmStart] = {}
        self._stan = None

    # -- public ---------------------------------------------------------------------------------------------

    def fit_predict_many(self, jobs: list[ForecastJob]) -> list[Forecast]:
        results: list[Forecast | None] = []
        fallback: list[tuple[int, str]] = []
        for position, job in enumerate(jobs):
            reason = self.unsupported or _job_problem(job)
            forecast = None
            if reason is None:
                try:
                    forecast = self._exact(job)
                except (SolverError, np.linalg.LinAlgError) as exc:
                    reason = f"exact solver failed: {exc}"
            if forecast is None:
                fallback.append((position, reason))
            results.append(forecast)
        if fallback:
            stan_results = self._stan_engine().fit_predict_many([jobs[i] for i, _ in fallback])
            for (position, reason), forecast in zip(fallback, stan_results):
                info = {**forecast.info, "path": "stan-fallback", "reason": reason}
                results[position] = Forecast(forecast.future, forecast.yhat, forecast.trend, self.name, info)
        return results  # type: ignore[return-value]

    def fit_with_warm_starts(self, batch: list[tuple[ForecastJob, WarmStart | None]]
                             ) -> list[tuple[Forecast, WarmStart | None]]:
        """Fit each job from the given warm start; return each forecast with the series' new warm start.

        For :class:`~strategies.engines.pool.ExactPool`: the caller keeps the warm starts, so the process that
        fits a job does not matter. The engine keeps none of them afterwards.
        """
        out = []
        for job, warm in batch:
            self._warm.clear()
            if warm is not None:
                self._warm[job.key] = warm
            forecast = self.fit_predict_many([job])[0]
            out.append((forecast, self._warm.get(job.key)))
        self._warm.clear()
        return out

    def design(self, job: ForecastJob) -> Design:
        """Prophet's scaled data and design matrix for ``job`` under this engine's settings."""
        s = self.settings
        return build_design(job.ds, job.y, n_changepoints=s.n_changepoints, changepoint_range=s.changepoint_range,
                            yearly=bool(s.yearly_seasonality), weekly=bool(s.weekly_seasonality),
                            daily=bool(s.daily_seasonality),
                            seasonality_prior_scale=s.seasonality_prior_scale)

    def solve(self, job: ForecastJob, warm: bool = True) -> tuple[Design, MapFit]:
        """The exact MAP fit of ``job`` (raises ``SolverError`` if it cannot certify one)."""
        design = self.design(job)
        if design.n_changepoints == 0:
            raise SolverError("Prophet would place no changepoints here")
        if design.X.shape[1] >= len(design.y):
            raise SolverError(f"{len(design.y)} rows for {design.X.shape[1]} parameters")
        # Daily seasonality on intraday timestamps makes Prophet's posterior multi-modal: a warm start can settle
        # in another mode than a cold one (up to 5% of price apart, measured), and the live cycle always starts
        # cold. Cold starts there keep a fit a pure function of its window, so both homes decide alike.
        if self.settings.daily_seasonality:
            warm = False
        fit = solve_map(design, self.settings.changepoint_prior_scale, self._warm.get(job.key) if warm else None)
        if not fit.kkt <= KKT_TOLERANCE:
            raise SolverError(f"optimality check failed (KKT residual {fit.kkt:.1e})")
        self._warm[job.key] = WarmStart(np.sign(fit.theta[design.delta_slice]), fit.sigma**2)
        return design, fit

    # -- private --------------------------------------------------------------------------------------------

    def _exact(self, job: ForecastJob) -> Forecast:
        y = np.asarray(job.y, dtype=np.float64)
        if y.min() == y.max():
            return self._constant(job, y)
        design, fit = self.solve(job)
        rows = design.rows(job.future)
        theta = fit.theta
        n_trend = 2 + design.n_changepoints
        trend = rows[:, :n_trend] @ theta[:n_trend] * design.y_scale
        yhat = rows @ theta * design.y_scale
        info = {"path": "exact", "lp": fit.lp, "kkt": fit.kkt, "warm": fit.warm, "steps": fit.iterations,
                "params": _prophet_params(design, fit)}
        return Forecast(job.future, yhat, trend, self.name, info)

    def _constant(self, job: ForecastJob, y: np.ndarray) -> Forecast:
        # Prophet skips Stan for a constant series and keeps its initial values: a flat line through the data.
        level = np.full(len(job.future), y[0])
        return Forecast(job.future, level, level.copy(), self.name, {"path": "constant"})

    def _stan_engine(self):
        if self._stan is None:
            from strategies.engines.stan import StanEngine

            self._stan = StanEngine(self.settings)
        return self._stan


def _job_problem(job: ForecastJob) -> str | None:
    """Why a job's data need stock Prophet's preprocessing (which sorts, deduplicates and drops NaN)."""
    ds = job.ds if isinstance(job.ds, pd.DatetimeIndex) else pd.DatetimeIndex(job.ds)
    y = np.asarray(job.y)
    if len(ds) != len(y):
        return f"{len(ds)} dates for {len(y)} values"
    if len(y) < 3:
        return "fewer than 3 rows"
    if ds.tz is not None or not ds.is_monotonic_increasing or not ds.is_unique:
        return "dates are not sorted, distinct and timezone-naive"
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
        return "values are missing or not finite"
    return None


def _prophet_params(design: Design, fit: MapFit) -> dict[str, list[float]]:
    """The fit in the shape of ``Prophet.params`` (beta is Prophet's single zero when there is no seasonality)."""
    theta = fit.theta
    beta = theta[design.beta_slice].tolist() or [0.0]
    return {"k": [float(theta[0])], "m": [float(theta[1])], "delta": theta[design.delta_slice].tolist(),
            "sigma_obs": [fit.sigma], "beta": beta}
