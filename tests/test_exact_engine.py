"""The exact engine solves Prophet's own MAP problem: same design, objective at least Stan's, optimality, fallback."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from marketdata import load_sample
from strategies.engines import ForecastJob, ProphetSettings, make_engine
from strategies.engines._design import build_design
from strategies.engines._solver import _Problem, kkt_residual, log_posterior, solve_map
from strategies.engines.exact import ExactEngine, unsupported_reason
from strategies.engines.stan import StanEngine
from strategies.forecaster import Forecaster
from strategies.params import StrategyParams

logging.getLogger("cmdstanpy").disabled = True


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    return load_sample().closes


def _synthetic(kind: str, n: int, seed: int = 0, start: str = "2019-01-01", freq: str = "B") -> pd.Series:
    rng = np.random.default_rng(seed)
    ds = pd.date_range(start, periods=n, freq=freq)
    if kind == "walk":
        y = 100 + np.cumsum(rng.normal(0, 1.5, n))
    elif kind == "kink":
        t = np.arange(n)
        y = 50 + 0.2 * t - 0.5 * np.maximum(t - 0.6 * n, 0) + rng.normal(0, 1.0, n)
    else:
        raise ValueError(kind)
    return pd.Series(y, index=ds)


def _prophet(settings: ProphetSettings):
    from prophet import Prophet

    return Prophet(**settings.prophet_kwargs())


def _frame(series: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"ds": series.index, "y": series.to_numpy()})


def _job(series: pd.Series, key: str = "X", horizon: int = 5) -> ForecastJob:
    future = pd.bdate_range(series.index[-1], periods=horizon + 1)[1:]
    return ForecastJob(key, pd.DatetimeIndex(series.index), series.to_numpy(), future)


# -- the design matrix is Prophet's ---------------------------------------------------------------------------

DESIGN_CASES = [
    ("sample", "AAPL", 252, False, False),
    ("sample", "KO", 500, True, True),
    ("sample", "XOM", 40, False, True),
    ("sample", "GE", 14, False, False),
    ("calendar", "walk", 200, True, False),  # daily data with weekends
]


@pytest.mark.parametrize("source,name,n,yearly,weekly", DESIGN_CASES)
def test_design_matrix_equals_prophet_preprocess(closes, source, name, n, yearly, weekly):
    series = closes[name].dropna().iloc[-n:] if source == "sample" else _synthetic(name, n, freq="D")
    settings = ProphetSettings(yearly_seasonality=yearly, weekly_seasonality=weekly)
    inputs = _prophet(settings).preprocess(_frame(series))
    design = build_design(series.index, series.to_numpy(), n_changepoints=settings.n_changepoints,
                          changepoint_range=settings.changepoint_range, yearly=yearly, weekly=weekly)
    t = inputs.t.to_numpy()
    assert np.array_equal(design.t, t)
    assert np.array_equal(design.y, inputs.y.to_numpy())
    assert np.array_equal(design.t_change, np.asarray(inputs.t_change))
    indicator = t[:, None] >= np.asarray(inputs.t_change)[None, :]
    assert np.array_equal(design.X[:, design.delta_slice], indicator * (t[:, None] - inputs.t_change[None, :]))
    assert np.array_equal(design.X[:, :2], np.column_stack([t, np.ones_like(t)]))
    if yearly or weekly:
        assert np.array_equal(design.X[:, design.beta_slice], inputs.X.to_numpy())
        assert np.array_equal(np.sqrt(design.prior_var[design.beta_slice]), np.asarray(inputs.sigmas))
    else:  # Prophet's all-zero dummy column: nothing to fit
        assert not inputs.X.to_numpy().any() and design.beta_slice.stop == design.beta_slice.start


def test_forecast_from_exact_params_equals_prophet_predict(closes):
    series = closes["MSFT"].dropna().iloc[-300:]
    settings = ProphetSettings(weekly_seasonality=True, yearly_seasonality=True)
    job = _job(series)
    forecast = ExactEngine(settings).fit_predict_many([job])[0]
    assert forecast.info["path"] == "exact"
    model = _prophet(settings)
    model.preprocess(_frame(series))
    model.params = {k: np.asarray(v, dtype=float).reshape(1, -1) for k, v in forecast.info["params"].items()}
    predicted = model.predict(pd.DataFrame({"ds": job.future}))
    np.testing.assert_allclose(forecast.yhat, predicted["yhat"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(forecast.trend, predicted["trend"].to_numpy(), rtol=1e-12)


# -- the objective reaches at least Stan's optimum -------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    label: str
    series: Any
    settings: ProphetSettings


def _cases(closes: pd.DataFrame) -> list[Case]:
    sample = lambda name, end, n: closes[name].loc[:end].dropna().iloc[-n:]  # noqa: E731
    return [
        Case("synthetic walk 120", _synthetic("walk", 120, seed=1), ProphetSettings()),
        Case("synthetic kink 252", _synthetic("kink", 252, seed=2), ProphetSettings()),
        Case("synthetic walk 60 (Stan uses Newton)", _synthetic("walk", 60, seed=3), ProphetSettings()),
        Case("AAPL 252", sample("AAPL", "2022-06-30", 252), ProphetSettings()),
        Case("KO 500 weekly", sample("KO", "2021-12-31", 500), ProphetSettings(weekly_seasonality=True)),
        Case("synthetic kink 252 cps 0.005", _synthetic("kink", 252, seed=6), ProphetSettings(changepoint_prior_scale=0.005)),
        Case("JPM 252 in the 2008 crash", sample("JPM", "2008-11-28", 252), ProphetSettings()),
        Case("GE 100", sample("GE", "2015-03-31", 100), ProphetSettings()),
        Case("XOM 300 cps 0.5", sample("XOM", "2020-04-30", 300), ProphetSettings(changepoint_prior_scale=0.5)),
        Case("KO 120 yearly+weekly cps 5 (near-collinear columns)", sample("KO", "2011-06-30", 120),
             ProphetSettings(yearly_seasonality=True, weekly_seasonality=True, changepoint_prior_scale=5.0)),
        Case("MSFT 252 yearly+weekly cps 0.5", sample("MSFT", "2020-09-30", 252),
             ProphetSettings(yearly_seasonality=True, weekly_seasonality=True, changepoint_prior_scale=0.5)),
    ]


def _stan_params(model) -> dict[str, Any]:
    p = model.params
    return {"k": float(p["k"].ravel()[0]), "m": float(p["m"].ravel()[0]), "delta": p["delta"].ravel().tolist(),
            "sigma_obs": float(p["sigma_obs"].ravel()[0]), "beta": p["beta"].ravel().tolist()}


def test_log_posterior_at_least_stans_and_optimal(closes):
    for case in _cases(closes):
        settings = case.settings
        tau = settings.changepoint_prior_scale
        model = _prophet(settings)
        model.fit(_frame(case.series), sig_figs=17)
        stan_lp = float(model.stan_fit.optimized_params_dict["lp__"])
        engine = ExactEngine(settings)
        job = _job(case.series)
        design, fit = engine.solve(job)
        # Our objective is Stan's: evaluated at Stan's optimum it reproduces Stan's own lp__.
        sp = _stan_params(model)
        seasonal = design.beta_slice.stop > design.beta_slice.start
        theta = np.concatenate([[sp["k"], sp["m"]], sp["delta"], sp["beta"] if seasonal else []])
        ours_at_stan = log_posterior(design, theta, sp["sigma_obs"], tau, None if seasonal else sp["beta"])
        assert ours_at_stan == pytest.approx(stan_lp, rel=1e-12, abs=1e-9), case.label
        # And Stan's own log density (jacobian=False, as optimize uses) at the exact optimum is at least Stan's.
        exact = engine.fit_predict_many([job])[0].info["params"]
        stan_at_exact = _stan_log_prob(model, case.series, settings, exact)
        assert stan_at_exact == pytest.approx(fit.lp, rel=1e-12, abs=1e-9), case.label
        assert fit.lp >= stan_lp - 1e-6 * abs(stan_lp), case.label
        assert fit.kkt < 1e-8, case.label


def _stan_log_prob(model, series: pd.Series, settings: ProphetSettings, params: dict[str, Any]) -> float:
    fresh = _prophet(settings)
    inputs = dataclasses.asdict(fresh.preprocess(_frame(series)))
    init = dataclasses.asdict(fresh.calculate_initial_params(inputs["K"]))
    _, data = model.stan_backend.prepare_data(init, inputs)
    values = {"k": params["k"][0], "m": params["m"][0], "delta": params["delta"],
              "sigma_obs": params["sigma_obs"][0], "beta": params["beta"]}
    table = model.stan_backend.model.log_prob(values, data, jacobian=False, sig_figs=17)
    return float(table["lp__"].iloc[0])


def test_optimality_check_rejects_a_nearby_point(closes):
    design = build_design(closes["JPM"].dropna().index[-252:], closes["JPM"].dropna().to_numpy()[-252:])
    fit = solve_map(design, 0.05)
    problem = _Problem(design, 0.05)
    assert kkt_residual(problem, fit.theta, fit.sigma**2) < 1e-9
    nudged = fit.theta.copy()
    nudged[0] *= 1 + 1e-4
    assert kkt_residual(problem, nudged, fit.sigma**2) > 1e-6
    assert log_posterior(design, nudged, fit.sigma, 0.05) < fit.lp
    assert kkt_residual(problem, fit.theta, fit.sigma**2 * 1.01) > 1e-4


# -- warm starts change only the starting point --------------------------------------------------------------

def test_warm_and_cold_fits_agree(closes):
    series = closes["KO"].dropna().loc[:"2022-10-31"]
    settings = ProphetSettings()
    warm_engine = ExactEngine(settings)
    warm_flags = []
    for end in range(len(series) - 30, len(series)):
        job = _job(series.iloc[end - 252:end], key="KO")
        warm = warm_engine.fit_predict_many([job])[0]
        cold = ExactEngine(settings).fit_predict_many([job])[0]
        warm_flags.append(warm.info["warm"])
        assert cold.info["warm"] is False
        np.testing.assert_allclose(warm.yhat, cold.yhat, rtol=1e-9)
        np.testing.assert_allclose(warm.info["params"]["delta"], cold.info["params"]["delta"], rtol=1e-6, atol=1e-9)
        assert warm.info["lp"] == pytest.approx(cold.info["lp"], rel=1e-12)
    assert warm_flags[0] is False and all(warm_flags[1:])


def test_a_stale_warm_start_from_another_series_still_reaches_the_optimum(closes):
    engine = ExactEngine(ProphetSettings())
    engine.fit_predict_many([_job(_synthetic("kink", 252, seed=5), key="S")])
    job = _job(closes["GE"].dropna().iloc[-252:], key="S")
    warm = engine.fit_predict_many([job])[0]
    cold = ExactEngine(ProphetSettings()).fit_predict_many([job])[0]
    assert warm.info["warm"] and warm.info["lp"] == pytest.approx(cold.info["lp"], rel=1e-12)


def test_many_jobs_keep_their_order_and_keys(closes):
    jobs = [_job(closes[s].dropna().iloc[-252:], key=s) for s in ("AAPL", "KO", "XOM")]
    together = ExactEngine(ProphetSettings()).fit_predict_many(jobs)
    alone = [ExactEngine(ProphetSettings()).fit_predict_many([job])[0] for job in jobs]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.yhat, b.yhat, rtol=1e-12)
        assert a.engine == "exact"


# -- the fallback to stock Prophet ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MultiplicativeSettings(ProphetSettings):
    def prophet_kwargs(self) -> dict[str, Any]:
        return {**super().prophet_kwargs(), "seasonality_mode": "multiplicative"}


def test_unsupported_settings_fall_back_to_stan():
    assert unsupported_reason(ProphetSettings()) is None
    assert "yearly_seasonality" in unsupported_reason(ProphetSettings(yearly_seasonality="auto"))
    settings = MultiplicativeSettings(weekly_seasonality=True)
    assert "seasonality_mode" in unsupported_reason(settings)
    job = _job(_synthetic("walk", 40, seed=4))
    forecast = ExactEngine(settings).fit_predict_many([job])[0]
    assert forecast.info["path"] == "stan-fallback" and "seasonality_mode" in forecast.info["reason"]
    assert forecast.engine == "exact"
    stan = StanEngine(settings).fit_predict_many([job])[0]
    np.testing.assert_allclose(forecast.yhat, stan.yhat, rtol=1e-6)


def test_jobs_outside_the_exact_model_fall_back_one_by_one(closes):
    settings = ProphetSettings(yearly_seasonality=True)
    good = _job(closes["AAPL"].dropna().iloc[-252:], key="AAPL")
    short = _job(closes["KO"].dropna().iloc[-15:], key="KO")  # 15 rows, 33 parameters
    gappy_values = closes["XOM"].dropna().iloc[-60:].to_numpy().copy()
    gappy_values[10] = np.nan
    gappy = ForecastJob("XOM", pd.DatetimeIndex(closes["XOM"].dropna().index[-60:]), gappy_values, good.future)
    results = ExactEngine(settings).fit_predict_many([good, short, gappy])
    assert [r.info["path"] for r in results] == ["exact", "stan-fallback", "stan-fallback"]
    assert "rows" in results[1].info["reason"] and "missing" in results[2].info["reason"]
    assert all(np.isfinite(r.yhat).all() for r in results)


def test_constant_series_matches_prophet():
    series = pd.Series(42.0, index=pd.bdate_range("2022-01-03", periods=80))
    job = _job(series)
    forecast = ExactEngine(ProphetSettings()).fit_predict_many([job])[0]
    assert forecast.info["path"] == "constant"
    model = _prophet(ProphetSettings())
    model.fit(_frame(series))
    predicted = model.predict(pd.DataFrame({"ds": job.future}))
    np.testing.assert_allclose(forecast.yhat, predicted["yhat"].to_numpy())
    np.testing.assert_allclose(forecast.trend, predicted["trend"].to_numpy())


# -- wiring ----------------------------------------------------------------------------------------------------

def test_make_engine_and_forecaster_use_the_exact_engine(closes):
    assert make_engine("exact", ProphetSettings()).name == "exact"
    params = StrategyParams(engine="exact", history=120, refit_every=1)
    frame = closes[["AAPL", "KO"]].loc[:"2022-06-30"].iloc[-200:]
    forecaster = Forecaster(params)
    points = forecaster.forecasts(frame, ["AAPL", "KO"])
    assert set(points) == {"AAPL", "KO"} and forecaster.fits == 2
    for symbol, point in points.items():
        assert abs(point.yhat / frame[symbol].iloc[-1] - 1) < 0.5
