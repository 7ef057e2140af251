"""Prophet's MAP problem (linear growth, additive features) solved exactly: active-set lasso plus noise update.

In Prophet's scaled units, with ``theta = (k, m, delta, beta)``, design ``X`` (see ``_design``) and noise ``sigma``,
Stan's ``optimize`` maximises (``~`` statements drop constants; ``jacobian=False`` adds no term for ``sigma``)::

    lp = -T log(sigma) - |y - X theta|^2 / (2 sigma^2) - 2 sigma^2
         - (k^2 + m^2) / 50 - sum beta^2 / (2 s^2) - sum |delta| / tau

For a fixed ``u = sigma^2`` this is a ridge-plus-lasso problem in ``theta``; it is solved exactly by an active-set
method on the signs of ``delta`` (every step is one small linear solve in the Gram matrix, so the cost barely
grows with the number of rows). For a fixed ``theta`` the best ``u`` solves ``4u^2 + T u - RSS = 0``. The outer
loop looks for the ``u`` that reproduces itself through both updates, with bracketed Newton steps; where it stops,
``theta`` is exactly optimal for ``u`` and ``u`` for ``theta``, so every optimality (KKT) condition of the joint
problem holds, and :func:`kkt_residual` verifies that independently.

Example:
    >>> import numpy as np, pandas as pd
    >>> from strategies.engines._design import build_design
    >>> rng = np.random.default_rng(0)
    >>> ds = pd.bdate_range("2022-01-03", periods=120)
    >>> d = build_design(ds, 50 + np.cumsum(rng.normal(0, 1, 120)))
    >>> fit = solve_map(d, tau=0.05)
    >>> bool(fit.kkt < 1e-8), fit.lp > log_posterior(d, fit.theta * 0.999, fit.sigma, 0.05)
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategies.engines._design import Design


@dataclass(frozen=True)
class MapFit:
    """The optimum: ``theta`` (k, m, delta..., beta...), ``sigma``, its log posterior and optimality residual."""

    theta: np.ndarray
    sigma: float
    lp: float
    kkt: float
    active: np.ndarray  # bool per changepoint: delta != 0
    iterations: int
    warm: bool


@dataclass
class WarmStart:
    """What carries over from one fit of a series to the next: the changepoint signs and the noise variance."""

    signs: np.ndarray
    u: float


class SolverError(RuntimeError):
    """The active-set iteration did not converge (the engine then falls back to Stan)."""


def log_posterior(design: Design, theta: np.ndarray, sigma: float, tau: float, extra_beta: np.ndarray | None = None) -> float:
    """Stan's ``lp__`` for ``optimize`` (constants dropped, no Jacobian) at ``theta``, ``sigma``.

    ``extra_beta`` holds coefficients of Prophet's all-zero dummy column (used when there is no seasonality):
    they only add their N(0, 1) prior.
    """
    theta = np.asarray(theta, dtype=np.float64)
    resid = design.y - design.X @ theta
    gauss = np.isfinite(design.prior_var)
    lp = (-len(design.y) * np.log(sigma) - resid @ resid / (2 * sigma**2) - 2 * sigma**2
          - np.sum(theta[gauss] ** 2 / (2 * design.prior_var[gauss])) - np.sum(np.abs(theta[design.delta_slice])) / tau)
    if extra_beta is not None:
        lp -= float(np.sum(np.asarray(extra_beta) ** 2) / 2)
    return float(lp)


def _best_u(rss: float, n: int) -> float:
    # d lp / d sigma = 0  <=>  4 u^2 + n u - rss = 0 with u = sigma^2; the stable root of the quadratic:
    return 2 * rss / (n + np.sqrt(n * n + 16 * rss))


def _scaled_solve(H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``H^-1 rhs`` for a symmetric positive definite ``H``, solved on unit diagonal (Jacobi scaling).

    Seasonal Fourier columns on business days are nearly collinear with the intercept (five weekdays, six weekly
    features), so ``H`` can have a condition number near 1e8; an explicit inverse then loses digits that the
    noise update notices, while a pivoted solve on the equilibrated matrix keeps them.
    """
    d = 1.0 / np.sqrt(H.diagonal())
    A, b = H * d[:, None] * d[None, :], rhs * d
    if _solve1 is not None:
        # The LAPACK call np.linalg.solve makes, without its per-call checks and error-state context (a
        # thousandth of a second per fit). A singular system leaves non-finite numbers: then the checked
        # call runs, and raises as before.
        with np.errstate(all="ignore"):
            x = _solve1(A, b, signature="dd->d")
        if np.isfinite(x).all():
            return d * x
    return d * np.linalg.solve(A, b)


try:  # numpy's own gufunc behind np.linalg.solve for one right-hand side
    from numpy.linalg import _umath_linalg

    _solve1 = _umath_linalg.solve1
except (ImportError, AttributeError):  # pragma: no cover - another numpy layout: use the public call
    _solve1 = None


class _Problem:
    """The Gram form of one design: everything after this is O(P^3) with P = number of columns."""

    def __init__(self, design: Design, tau: float) -> None:
        X, y = design.X, design.y
        self.n = len(y)
        self.G = X.T @ X
        self.b = X.T @ y
        self.X, self.y = X, y
        self.tau = tau
        self.p = X.shape[1]
        self.dslice = design.delta_slice
        self.S = design.n_changepoints
        gauss = np.isfinite(design.prior_var)
        self.dinv = np.where(gauss, 1.0 / np.where(gauss, design.prior_var, 1.0), 0.0)
        self.is_delta = ~gauss

    def rss(self, theta: np.ndarray) -> float:
        # From the residuals, not from the Gram form y'y - 2 theta'b + theta'G theta: with a close fit the latter
        # cancels away the digits that the noise update needs.
        resid = self.y - self.X @ theta
        return float(resid @ resid)

    def solve_fixed_u(self, u: float, signs: np.ndarray, max_steps: int
                      ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Exact minimiser of 0.5*RSS + u/2 theta'D theta + u/tau |delta|_1 from the sign pattern ``signs``.

        Active-set (sign-constrained QP) iteration: solve on the current signs; if a changepoint coefficient would
        change sign, stop at the first zero crossing and release it; when the signs are consistent, add the
        changepoint that violates the subgradient condition most. Each step lowers the objective, so it ends.
        Returns ``(theta, signs, steps, dtheta_du)``, the last being the derivative of the solution in ``u`` with
        the signs held (for the Newton step on the noise variance).
        """
        lam = u / self.tau
        H = self.G + np.diag(u * self.dinv)
        bmax = float(np.abs(self.b).max())
        signs = signs.copy()
        free = np.ones(self.p, dtype=bool)
        theta = None
        for step in range(1, max_steps + 1):
            free[self.dslice] = signs != 0
            rhs = self.b.copy()
            rhs[self.dslice] -= lam * signs
            idx = np.flatnonzero(free)
            target = np.zeros(self.p)
            H_free = H[idx[:, None], idx]  # the same entries as H[np.ix_(idx, idx)], without building the index
            target[idx] = _scaled_solve(H_free, rhs[idx])
            tdelta = target[self.dslice]
            wrong = (signs != 0) & (np.sign(tdelta) != signs)
            if wrong.any():
                if theta is None:
                    # A warm start whose signs no longer fit: release the inconsistent ones and solve again.
                    signs[wrong] = 0
                    continue
                # Move from the sign-consistent current point toward the target until the first delta hits zero.
                cur = theta[self.dslice]
                frac = np.where(wrong, cur / np.where(wrong, cur - tdelta, 1.0), np.inf)
                alpha = float(np.clip(frac.min(), 0.0, 1.0))
                theta = theta + alpha * (target - theta)
                hit = wrong & (frac <= alpha + 1e-12)
                signs[hit] = 0
                theta[self.dslice][hit] = 0.0  # a basic slice is a view, so this zeroes theta itself
                continue
            theta = target
            grad = (self.G @ theta - self.b)[self.dslice]  # gradient of 0.5*RSS w.r.t. delta
            excess = np.where(signs == 0, np.abs(grad) - lam, -np.inf)
            j = int(np.argmax(excess))
            if excess[j] <= 1e-12 * lam + 1e-15 * bmax:
                slope = self.dinv * theta
                slope[self.dslice] += signs / self.tau
                dtheta = np.zeros(self.p)
                dtheta[idx] = -_scaled_solve(H_free, slope[idx])
                return theta, signs, step, dtheta
            signs[j] = -np.sign(grad[j])
        raise SolverError(f"active set did not settle in {max_steps} steps")


def kkt_residual(problem: _Problem, theta: np.ndarray, u: float) -> float:
    """Largest violation of the optimality conditions, relative to the scale of ``X'y``; 0 at the exact optimum.

    Free coefficients need a zero gradient, zero changepoints a gradient inside ``[-u/tau, u/tau]``, non-zero
    ones exactly ``-sign(delta) u/tau``, and ``u`` must solve its quadratic.
    """
    lam = u / problem.tau
    grad = problem.b - problem.G @ theta - u * problem.dinv * theta  # u * d lp / d theta (smooth part)
    delta = theta[problem.dslice]
    gd = grad[problem.dslice]
    scale = max(float(np.abs(problem.b).max()), lam)
    free_res = np.abs(grad[~problem.is_delta]).max(initial=0.0)
    nonzero = delta != 0
    nz_res = np.abs(gd[nonzero] - lam * np.sign(delta[nonzero])).max(initial=0.0)
    zero_res = np.maximum(np.abs(gd[~nonzero]) - lam, 0.0).max(initial=0.0)
    u_res = abs(_best_u(problem.rss(theta), problem.n) - u) / u
    return float(max((free_res + nz_res + zero_res) / scale, u_res))


def solve_map(design: Design, tau: float, warm: WarmStart | None = None, *, tol: float = 1e-11,
              max_rounds: int = 200, max_steps: int = 500) -> MapFit:
    """The exact MAP estimate of Prophet's linear model on ``design``; ``warm`` only changes the starting point."""
    problem = _Problem(design, tau)
    S = design.n_changepoints
    use_warm = warm is not None and len(warm.signs) == S and warm.u > 0 and np.isfinite(warm.u)
    if use_warm:
        signs, u = warm.signs.astype(np.float64), float(warm.u)
    else:
        signs = np.zeros(S)
        # Start the noise at the least-squares straight line's residual variance: close for price series.
        base = np.linalg.lstsq(design.X[:, :2], design.y, rcond=None)[0]
        theta0 = np.zeros(problem.p)
        theta0[:2] = base
        u = max(_best_u(problem.rss(theta0), problem.n), 1e-12)
    steps = 0
    low, high = 0.0, np.inf  # the root of target(u) - u stays bracketed, so a bad Newton step cannot cycle
    for rounds in range(1, max_rounds + 1):
        theta, signs, used, dtheta = problem.solve_fixed_u(u, signs, max_steps)
        steps += used
        rss = problem.rss(theta)
        target = _best_u(rss, problem.n)
        if target <= 0:
            raise SolverError("the model fits the data exactly; the noise scale collapses to zero")
        if abs(target - u) <= tol * u or high - low <= tol * u:
            break
        if target > u:
            low = max(low, u)
        else:
            high = min(high, u)
        # The plain update u <- target contracts slowly (by about 0.1 per round) when many changepoints are
        # active. With the signs held, target(u) is smooth and its slope is known, so take a Newton step on
        # target(u) - u = 0 instead; when that leaves the bracket (a sign change between rounds), use the plain
        # update if it stays inside, else bisect.
        slope = 2 * float((problem.G @ theta - problem.b) @ dtheta) / np.sqrt(problem.n**2 + 16 * rss)
        newton = u - (target - u) / (slope - 1)
        if np.isfinite(newton) and low < newton < high:
            u = newton
        elif low < target < high:
            u = target
        else:
            u = 0.5 * (low + high)
    else:
        raise SolverError(f"noise scale did not converge in {max_rounds} rounds")
    sigma = float(np.sqrt(u))
    return MapFit(theta, sigma, log_posterior(design, theta, sigma, tau), kkt_residual(problem, theta, u),
                  signs != 0, steps, use_warm)
