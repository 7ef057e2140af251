"""Prophet's preprocessing in numpy: scaling, time index, changepoints and the linear design of the trend.

With linear growth and additive seasonality Prophet's model is linear in its parameters
``theta = (k, m, delta_1..delta_S, beta_1..beta_K)``: the fitted value at scaled time ``t`` is
``k*t + m + sum_j delta_j * max(t - c_j, 0) + X_seasonal(t) @ beta`` (Stan writes the same thing as
``(k + A delta) t + (m - A (c * delta))`` with ``A[i, j] = t_i >= c_j``). This module builds that matrix
with the same arithmetic as ``Prophet.setup_dataframe``, ``set_changepoints`` and ``fourier_series``, so the
numbers equal ``Prophet.preprocess`` bit for bit (the tests check it).

Example:
    >>> import numpy as np, pandas as pd
    >>> ds = pd.bdate_range("2022-01-03", periods=50)
    >>> d = build_design(ds, np.linspace(10, 20, 50), n_changepoints=25, changepoint_range=0.8)
    >>> d.X.shape, d.n_changepoints, d.y_scale
    ((50, 27), 25, 20.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

YEARLY = (365.25, 10)  # (period in days, Fourier order): Prophet's built-in yearly seasonality
WEEKLY = (7.0, 3)
DAILY = (1.0, 4)
_NS_PER_DAY = 24 * 60 * 60 * 1e9


@dataclass(frozen=True)
class Design:
    """One series in Prophet's scaled units, ready for the MAP solver.

    Columns of ``X``: ``t``, ``1``, one hinge ``max(t - c_j, 0)`` per changepoint, then the Fourier features.
    ``prior_var`` is the Gaussian prior variance of each column's coefficient (``inf`` marks the Laplace-prior
    changepoint columns, which carry no Gaussian prior).
    """

    X: np.ndarray
    y: np.ndarray
    t: np.ndarray
    t_change: np.ndarray
    prior_var: np.ndarray
    y_scale: float
    start: np.int64
    t_scale: np.int64
    seasonalities: tuple[tuple[float, int], ...]

    @property
    def n_changepoints(self) -> int:
        return len(self.t_change)

    @property
    def delta_slice(self) -> slice:
        return slice(2, 2 + self.n_changepoints)

    @property
    def beta_slice(self) -> slice:
        return slice(2 + self.n_changepoints, self.X.shape[1])

    def scaled_time(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Prophet's ``t`` for ``dates``: (ds - start) / t_scale, computed as pandas does (int64 ns, then float)."""
        return (_as_ns(dates) - self.start) / self.t_scale

    def rows(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Design rows at arbitrary dates (for forecasting): same columns as ``X``."""
        t = self.scaled_time(dates)
        return _design_matrix(t, self.t_change, fourier_features(dates, self.seasonalities))


def _as_ns(dates: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(dates, dtype="datetime64[ns]").view(np.int64)  # no copy for a ns DatetimeIndex


def fourier_features(dates: pd.DatetimeIndex, seasonalities: tuple[tuple[float, int], ...]) -> np.ndarray:
    """``Prophet.fourier_series`` for each (period, order): columns sin, cos per order, in Prophet's order."""
    if not seasonalities:
        return np.empty((len(dates), 0))
    days = pd.Series(pd.DatetimeIndex(dates)) - pd.Timestamp("1970-01-01")
    t = np.asarray(days.dt.total_seconds() / (24 * 60 * 60), dtype=np.float64)  # exactly Prophet's arithmetic
    x_t = np.pi * 2 * t
    blocks = []
    for period, order in seasonalities:
        block = np.empty((len(t), 2 * order))
        for i in range(order):
            c = (i + 1) / period * x_t
            block[:, 2 * i] = np.sin(c)
            block[:, 2 * i + 1] = np.cos(c)
        blocks.append(block)
    return np.hstack(blocks)


def _design_matrix(t: np.ndarray, t_change: np.ndarray, seasonal: np.ndarray) -> np.ndarray:
    hinge = np.maximum(t[:, None] - t_change[None, :], 0.0)
    # Stan multiplies the indicator t >= c by (t - c); max(t - c, 0) is the same number, including at t == c.
    return np.hstack([t[:, None], np.ones((len(t), 1)), hinge, seasonal])


def changepoint_rows(n_rows: int, n_changepoints: int, changepoint_range: float) -> np.ndarray:
    """Row positions of Prophet's automatic changepoints (``set_changepoints``), possibly fewer than asked."""
    hist_size = int(np.floor(n_rows * changepoint_range))
    n = min(n_changepoints, hist_size - 1)
    if n <= 0:
        return np.empty(0, dtype=int)
    return np.linspace(0, hist_size - 1, n + 1).round().astype(int)[1:]


def build_design(
    ds: pd.DatetimeIndex,
    y: np.ndarray,
    *,
    n_changepoints: int = 25,
    changepoint_range: float = 0.8,
    yearly: bool = False,
    weekly: bool = False,
    daily: bool = False,
    seasonality_prior_scale: float = 10.0,
) -> Design:
    """Prophet's scaled data and design for closes ``y`` at sorted, distinct dates ``ds`` (absmax scaling)."""
    y = np.asarray(y, dtype=np.float64)
    ns = _as_ns(ds)
    start = ns[0]
    t_scale = ns[-1] - start
    t = (ns - start) / t_scale
    y_scale = float(np.abs(y).max())
    if y_scale == 0:
        y_scale = 1.0
    t_change = np.sort(t[changepoint_rows(len(y), n_changepoints, changepoint_range)])
    seasonalities = tuple(s for s, on in ((YEARLY, yearly), (WEEKLY, weekly), (DAILY, daily)) if on)
    seasonal = fourier_features(ds, seasonalities)
    X = _design_matrix(t, t_change, seasonal)
    prior_var = np.concatenate([[25.0, 25.0], np.full(len(t_change), np.inf),
                                np.full(seasonal.shape[1], seasonality_prior_scale**2)])
    return Design(X, y / y_scale, t, t_change, prior_var, y_scale, start, t_scale, seasonalities)
