"""The deflated Sharpe ratio against the paper's worked example and an independent computation with scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backtests import overfitting


def test_the_papers_worked_example():
    """Bailey and Lopez de Prado (2014), section 6: annualised SR 2.5 over 5 years of daily returns (T = 1250),
    N = 100 trials with annualised Sharpe variance 0.5, skewness -3, kurtosis 10: SR0 = 0.1132, DSR = 0.9004."""
    assert overfitting.expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=5e-5)
    dsr = overfitting.deflated_sharpe(2.5 / np.sqrt(250), 1250, -3.0, 10.0, 100, 0.5 / 250)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_deflate_matches_an_independent_computation():
    rng = np.random.default_rng(11)
    r = pd.Series(rng.standard_t(5, 750) * 0.01 + 0.0006)
    trials = list(rng.normal(0.02, 0.03, 40))
    d = overfitting.deflate(r, trials)
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r, bias=False), stats.kurtosis(r, fisher=False, bias=False)
    v = np.var(trials, ddof=1)
    emc = 0.5772156649015329
    sr0 = np.sqrt(v) * ((1 - emc) * stats.norm.ppf(1 - 1 / 40) + emc * stats.norm.ppf(1 - 1 / (40 * np.e)))
    expected = stats.norm.cdf((sr - sr0) * np.sqrt(len(r) - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr ** 2))
    assert d["deflated_sharpe"] == pytest.approx(expected, rel=1e-6)
    assert d["expected_max_sharpe"] == pytest.approx(sr0, rel=1e-9)
    # more trials, the same record: the bar rises and the deflated ratio falls
    assert overfitting.deflate(r, trials * 5)["deflated_sharpe"] < d["deflated_sharpe"] or v == 0
