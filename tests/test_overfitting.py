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


def _cscv_by_hand(frame: pd.DataFrame, blocks: int) -> list[float]:
    """CSCV written out again, the paper's steps with pandas and scipy's ranks (ties to the lowest rank)."""
    import itertools

    cuts = np.array_split(np.arange(len(frame)), blocks)
    out = []
    for half in itertools.combinations(range(blocks), blocks // 2):
        rows_in = np.concatenate([cuts[i] for i in half])
        rows_out = np.setdiff1d(np.arange(len(frame)), rows_in)
        j, jbar = frame.iloc[rows_in], frame.iloc[rows_out]
        r_in, r_out = j.mean() / j.std(), jbar.mean() / jbar.std()
        n_star = r_in.idxmax()
        omega = stats.rankdata(r_out.to_numpy(), method="min")[list(frame.columns).index(n_star)] / (len(r_out) + 1)
        out.append(np.log(omega / (1 - omega)))
    return out


def test_pbo_matches_cscv_written_out_by_hand():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(0.0002, 0.01, (320, 12)))
    mine = overfitting.pbo_cscv(frame, blocks=8)
    logits = _cscv_by_hand(frame, 8)
    assert mine["splits"] == 70 == len(logits)
    assert mine["pbo"] == pytest.approx(np.mean(np.array(logits) <= 0), abs=1e-12)
    assert mine["median_logit"] == pytest.approx(np.median(logits), abs=1e-12)
    assert 0.2 < mine["pbo"] < 0.8  # twelve trials of pure noise: the in-sample best is a coin toss out of sample


def test_pbo_is_one_when_the_in_sample_best_always_loses_out_of_sample():
    """Two mirrored trials whose returns sum to zero over the whole run: whichever wins one half loses the other.
    (Block means drawn at random and centred, so no half of the blocks sums to exactly zero: no ties.)"""
    rng = np.random.default_rng(2)
    means = rng.normal(0, 0.01, 8)
    means -= means.mean()
    a = np.repeat(means, 40) + rng.normal(0, 1e-5, 320)
    frame = pd.DataFrame({"a": a, "b": -a})
    assert overfitting.pbo_cscv(frame, blocks=8)["pbo"] == 1.0
    skilled = frame.assign(c=np.abs(a) + 0.02)  # a third trial that gains on every day, by far
    assert overfitting.pbo_cscv(skilled, blocks=8)["pbo"] == 0.0
