"""The reference engine: stock Prophet (``Prophet().fit``, Stan's L-BFGS through cmdstanpy).

Example:
    >>> import numpy as np, pandas as pd
    >>> ds = pd.bdate_range("2021-01-04", periods=60)
    >>> job = ForecastJob("X", ds, np.linspace(10, 20, 60), pd.bdate_range("2021-04-01", periods=2))
    >>> round(float(StanEngine(ProphetSettings()).fit_predict_many([job])[0].yhat[0]), 1) > 20
    True
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from strategies.engines.base import Forecast, ForecastJob, ProphetSettings

# Prophet logs an error about plotly at import and cmdstanpy logs every run; neither is actionable here.
logging.getLogger("prophet.plot").disabled = True
logging.getLogger("cmdstanpy").disabled = True
logging.getLogger("prophet").setLevel(logging.WARNING)


class StanEngine:
    """Fits each job with ``prophet.Prophet(**settings).fit`` and predicts with ``uncertainty_samples=0``."""

    name = "stan"

    def __init__(self, settings: ProphetSettings) -> None:
        self.settings = settings

    def fit(self, ds: pd.DatetimeIndex, y: np.ndarray):
        """The fitted ``prophet.Prophet`` model (for callers that want Prophet's own objects)."""
        from prophet import Prophet  # imported lazily: it costs about a second

        model = Prophet(**self.settings.prophet_kwargs())
        model.fit(pd.DataFrame({"ds": ds, "y": np.asarray(y, dtype="float64")}))
        return model

    def fit_predict_many(self, jobs: list[ForecastJob]) -> list[Forecast]:
        results = []
        for job in jobs:
            model = self.fit(job.ds, job.y)
            frame = model.predict(pd.DataFrame({"ds": job.future}))
            results.append(
                Forecast(
                    future=job.future,
                    yhat=frame["yhat"].to_numpy(dtype="float64"),
                    trend=frame["trend"].to_numpy(dtype="float64"),
                    engine=self.name,
                    info={"params": {k: np.asarray(v).ravel().tolist() for k, v in model.params.items()}},
                )
            )
        return results
