"""How much a Sharpe ratio picked from many trials is worth: the deflated Sharpe ratio of Bailey and López de
Prado ("The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality",
Journal of Portfolio Management, 2014).

A sweep tries N parameter sets and shows the best; even with no skill at all, the best of N Sharpe ratios is
above zero. The deflated Sharpe ratio is the probability that the true Sharpe ratio exceeds the one expected
from the best of N unskilled trials (``expected_max_sharpe``), given the track record's length, skewness and
kurtosis. All Sharpe ratios here are per period (per day), not annualised.

:func:`pbo_cscv` is the probability of backtest overfitting of Bailey, Borwein, López de Prado and Zhu ("The
Probability of Backtest Overfitting", Journal of Computational Finance, 2017), by combinatorially symmetric
cross-validation: how often the trial that is best on one half of the days ranks in the bottom half on the other.

Example (the paper's worked example: annualised SR 2.5 over 1250 days, 100 trials whose annualised SRs have
variance 0.5, skewness -3, kurtosis 10; the paper gives SR0 = 0.1132 and DSR = 0.9004):
    >>> sr0 = expected_max_sharpe(trials=100, sharpe_variance=0.5 / 250)
    >>> round(sr0, 4)
    0.1132
    >>> round(deflated_sharpe(2.5 / 250 ** 0.5, observations=1250, skew=-3, kurtosis=10, trials=100,
    ...                       sharpe_variance=0.5 / 250), 3)
    0.9
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pandas as pd

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def expected_max_sharpe(trials: int, sharpe_variance: float) -> float:
    """The Sharpe ratio expected of the best of ``trials`` independent unskilled trials whose Sharpe ratios have
    variance ``sharpe_variance`` (per period): ``sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))``."""
    if trials < 2 or sharpe_variance <= 0:
        return 0.0
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * _N.inv_cdf(1 - 1 / trials)
                                         + EULER_GAMMA * _N.inv_cdf(1 - 1 / (trials * math.e)))


def probabilistic_sharpe(sharpe: float, observations: int, skew: float, kurtosis: float,
                         benchmark: float = 0.0) -> float:
    """P(true Sharpe > ``benchmark``) for a per-period ``sharpe`` measured on ``observations`` returns with that
    skewness and (non-excess) kurtosis."""
    if observations < 2:
        return float("nan")
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe ** 2
    if spread <= 0:
        return float("nan")
    return _N.cdf((sharpe - benchmark) * math.sqrt(observations - 1) / math.sqrt(spread))


def deflated_sharpe(sharpe: float, observations: int, skew: float, kurtosis: float, trials: int,
                    sharpe_variance: float) -> float:
    """The deflated Sharpe ratio: :func:`probabilistic_sharpe` against :func:`expected_max_sharpe`."""
    return probabilistic_sharpe(sharpe, observations, skew, kurtosis, expected_max_sharpe(trials, sharpe_variance))


def per_period_sharpe(returns: pd.Series) -> float:
    """Mean over standard deviation of per-period returns (not annualised; 0 for a flat series)."""
    r = returns.dropna().astype("float64")
    std = float(r.std(ddof=1)) if len(r) > 1 else 0.0
    return float(r.mean()) / std if std > 0 else 0.0


def deflate(returns: pd.Series, trial_sharpes: list[float]) -> dict[str, float]:
    """The deflated Sharpe ratio of one track record (daily ``returns``) chosen among trials whose per-period
    Sharpe ratios are ``trial_sharpes`` (their variance stands for the spread of unskilled trials).

    >>> rng = np.random.default_rng(0)
    >>> r = pd.Series(rng.normal(0.0005, 0.01, 500))
    >>> d = deflate(r, [0.01, 0.05, -0.02, 0.03])
    >>> 0 <= d["deflated_sharpe"] <= 1 and d["trials"] == 4
    True
    """
    r = returns.dropna().astype("float64")
    sr = per_period_sharpe(r)
    skew = float(r.skew()) if len(r) > 2 else 0.0
    kurt = float(r.kurt()) + 3.0 if len(r) > 3 else 3.0  # pandas gives excess kurtosis
    variance = float(np.var(trial_sharpes, ddof=1)) if len(trial_sharpes) > 1 else 0.0
    skew, kurt = (0.0 if not math.isfinite(skew) else skew), (3.0 if not math.isfinite(kurt) else kurt)
    return {"sharpe_per_day": sr, "observations": int(len(r)), "skew": skew, "kurtosis": kurt,
            "trials": int(len(trial_sharpes)), "trial_sharpe_variance": variance,
            "expected_max_sharpe": expected_max_sharpe(len(trial_sharpes), variance),
            "probabilistic_sharpe": probabilistic_sharpe(sr, len(r), skew, kurt),
            "deflated_sharpe": deflated_sharpe(sr, len(r), skew, kurt, len(trial_sharpes), variance)}


def pbo_cscv(returns: pd.DataFrame, blocks: int = 8) -> dict[str, float]:
    """The probability of backtest overfitting by CSCV over ``returns`` (rows: periods, columns: trials).

    The rows are cut into ``blocks`` (even) contiguous blocks; for every way of taking half of them as the
    in-sample set (the rest out of sample), the trial with the best in-sample Sharpe ratio is ranked among all
    trials out of sample, ``w = rank / (N + 1)``, and its logit ``ln(w / (1 - w))`` kept. ``pbo`` is the share of
    splits whose logit is at most 0: the in-sample winner at or below the out-of-sample median.

    >>> rng = np.random.default_rng(1)
    >>> skill = pd.DataFrame(rng.normal(0, 0.01, (400, 5))).assign(best=lambda f: f[0] + 0.01)
    >>> pbo_cscv(skill)["pbo"]  # one trial better everywhere: never overfit
    0.0
    """
    if blocks < 2 or blocks % 2:
        raise ValueError(f"blocks must be an even number of at least 2, got {blocks}")
    frame = returns.dropna().astype("float64")
    trials = frame.shape[1]
    if trials < 2 or len(frame) < 2 * blocks:
        return {"pbo": float("nan"), "splits": 0, "trials": int(trials), "blocks": blocks,
                "median_logit": float("nan")}
    parts = np.array_split(frame.to_numpy(), blocks)

    def sharpe(rows: np.ndarray) -> np.ndarray:
        std = rows.std(axis=0, ddof=1)
        return np.where(std > 0, rows.mean(axis=0) / np.where(std > 0, std, 1.0), 0.0)

    logits = []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        inside = np.vstack([parts[i] for i in chosen])
        outside = np.vstack([parts[i] for i in range(blocks) if i not in chosen])
        is_perf, oos_perf = sharpe(inside), sharpe(outside)
        best = int(np.argmax(is_perf))
        rank = 1 + int((oos_perf < oos_perf[best]).sum())  # 1: worst out of sample, N: best
        w = rank / (trials + 1)
        logits.append(math.log(w / (1 - w)))
    logits_a = np.array(logits)
    return {"pbo": float((logits_a <= 0).mean()), "splits": int(len(logits_a)), "trials": int(trials),
            "blocks": blocks, "median_logit": float(np.median(logits_a))}
