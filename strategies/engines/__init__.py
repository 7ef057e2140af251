"""Forecast engines: ``stan`` (stock Prophet) and ``exact`` (the same MAP problem solved exactly).

Example:
    >>> make_engine("stan", ProphetSettings()).name
    'stan'
"""

from __future__ import annotations

from importlib import import_module

from strategies.engines.base import Forecast, ForecastEngine, ForecastJob, ProphetSettings

_ENGINES = {
    "stan": "strategies.engines.stan:StanEngine",
    "exact": "strategies.engines.exact:ExactEngine",
}


def make_engine(name: str, settings: ProphetSettings) -> ForecastEngine:
    """A new engine instance by name; raises ``ValueError`` for unknown names."""
    if name not in _ENGINES:
        raise ValueError(f"unknown forecast engine {name!r}; choose one of {', '.join(_ENGINES)}")
    module_name, class_name = _ENGINES[name].split(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(f"forecast engine {name!r} is not available in this build") from None
        raise
    return getattr(module, class_name)(settings)


__all__ = ["Forecast", "ForecastEngine", "ForecastJob", "ProphetSettings", "make_engine"]
