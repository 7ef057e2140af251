"""Parameter grids for sweeps: ``--grid band=0,0.01`` flags or a YAML/TOML file, expanded to parameter sets.

Names are fields of the strategy's ``Params`` (ProphetTrend's :class:`~strategies.params.StrategyParams` by
default; ``refit-every`` and ``refit_every`` both work); values are converted to the field's type, so
``history=126`` is an int and ``max_weight=none`` is ``None``.

Example:
    >>> grid = parse_grid_flags(["band=0.0,0.02", "history=126,252"])
    >>> grid
    {'band': [0.0, 0.02], 'history': [126, 252]}
    >>> [s["band"] for s in expand([grid])]
    [0.0, 0.0, 0.02, 0.02]
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

from clitools import UserError
from strategies.base import Strategy, StrategyError
from strategies.loader import coerce, param_fields
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend

Grid = dict[str, list[Any]]

NOT_SWEPT = {"name"}  # the run's label, not a parameter of the decision


def param_name(text: str, cls: type[Strategy] = ProphetTrend) -> str:
    """The ``cls.Params`` field a user spelled (dashes allowed); raises :class:`UserError` if there is none."""
    name = text.strip().replace("-", "_")
    known = [n for n in param_fields(cls) if n not in NOT_SWEPT]
    if name not in known:
        raise UserError(f"unknown parameter {text.strip()!r} in the grid; known parameters: {', '.join(known)}")
    return name


def convert(name: str, value: Any, cls: type[Strategy] = ProphetTrend) -> Any:
    """``value`` (text from a flag, or a YAML/TOML scalar) as the type of field ``name`` (``strategies.loader``)."""
    try:
        return coerce(cls, name, value)
    except StrategyError as exc:
        raise UserError(str(exc)) from None


def parse_grid_flags(specs: list[str], cls: type[Strategy] = ProphetTrend) -> Grid:
    """``["band=0,0.01", ...]`` -> ``{"band": [0.0, 0.01], ...}``; repeated names raise :class:`UserError`."""
    grid: Grid = {}
    for spec in specs:
        if "=" not in spec:
            raise UserError(f"--grid {spec!r} is not NAME=V1,V2,...")
        raw_name, raw_values = spec.split("=", 1)
        name = param_name(raw_name, cls)
        if name in grid:
            raise UserError(f"parameter {name} is given twice in --grid")
        grid[name] = _values(name, [v for v in raw_values.split(",") if v.strip() != ""] if raw_values.strip() else [],
                             cls)
    return grid


def parse_set_flags(specs: list[str], cls: type[Strategy] = ProphetTrend) -> dict[str, Any]:
    """Fixed parameters from ``--set NAME=VALUE`` flags."""
    fixed: dict[str, Any] = {}
    for spec in specs:
        if "=" not in spec:
            raise UserError(f"--set {spec!r} is not NAME=VALUE")
        raw_name, raw_value = spec.split("=", 1)
        name = param_name(raw_name, cls)
        fixed[name] = convert(name, raw_value, cls)
    return fixed


def load_grid_file(path: Path, cls: type[Strategy] = ProphetTrend) -> tuple[list[Grid], dict[str, Any]]:
    """Grids and fixed parameters from a YAML or TOML file.

    The file holds ``grid`` (a mapping of name to list of values, or a list of such mappings, swept one after
    the other) and optionally ``set`` (fixed values)::

        grid:
          band: [0.0, 0.01, 0.02]
          history: [126, 252]
        set:
          top_n: 5
    """
    if not path.is_file():
        raise UserError(f"grid file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            doc = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            raise UserError(f"grid file {path} must end in .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise UserError(f"grid file {path} is not valid: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # yaml.YAMLError has no common base with the above
        if type(exc).__module__.startswith("yaml"):
            raise UserError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        raise
    if not isinstance(doc, dict) or "grid" not in doc:
        raise UserError(f"grid file {path} has no 'grid' section")
    raw = doc["grid"]
    raw_grids = raw if isinstance(raw, list) else [raw]
    grids = []
    for raw_grid in raw_grids:
        if not isinstance(raw_grid, dict):
            raise UserError(f"grid file {path}: each grid must map parameter names to lists of values")
        grid = {}
        for raw_name, values in raw_grid.items():
            name = param_name(str(raw_name), cls)
            grid[name] = _values(name, values if isinstance(values, list) else [values], cls)
        grids.append(grid)
    fixed_raw = doc.get("set") or {}
    if not isinstance(fixed_raw, dict):
        raise UserError(f"grid file {path}: 'set' must map parameter names to values")
    fixed = {param_name(str(k), cls): convert(param_name(str(k), cls), v, cls) for k, v in fixed_raw.items()}
    return grids, fixed


def _values(name: str, raw: list[Any], cls: type[Strategy] = ProphetTrend) -> list[Any]:
    if not raw:
        raise UserError(f"the grid for {name} has no values")
    values = []
    for item in raw:
        value = convert(name, item, cls)
        if value not in values:  # a repeated value would only duplicate work
            values.append(value)
    return values


def expand(grids: list[Grid]) -> list[dict[str, Any]]:
    """Every parameter set of the grids, in order (last name varies fastest), without duplicates.

    Several grids are swept one after the other (their union), as in scikit-learn's ``ParameterGrid``.
    """
    sets: list[dict[str, Any]] = []
    for grid in grids:
        if not grid:
            continue
        names = list(grid)
        for combo in itertools.product(*(grid[n] for n in names)):
            candidate = dict(zip(names, combo))
            if candidate not in sets:
                sets.append(candidate)
    if not sets:
        raise UserError("the grid is empty: give --grid NAME=V1,V2 (or a --grid-file with a 'grid' section)")
    return sets


def swept_names(sets: list[dict[str, Any]]) -> list[str]:
    """Names that appear in any parameter set, in first-seen order."""
    names: list[str] = []
    for s in sets:
        names += [n for n in s if n not in names]
    return names


def build_params(swept: dict[str, Any], fixed: dict[str, Any], base: StrategyParams) -> StrategyParams:
    """``base`` with ``fixed`` then ``swept`` applied; invalid combinations raise :class:`UserError`."""
    try:
        return base.with_(**{**fixed, **swept})
    except ValueError as exc:
        raise UserError(f"invalid parameters {swept}: {exc}") from None
