"""Find a strategy by name, ``path/to/file.py:Class`` or ``module:Class``, and build it from text parameters.

The same spec works everywhere: ``--strategy`` on ``backtests.run``, ``backtests.sweep`` and ``deploy``,
``STRATEGY`` in the live cycle, ``strategy = ...`` in a config file. Parameters given as text (``--param
top_n=5``, ``STRATEGY_TOP_N=5``) are converted to the type of the strategy's ``Params`` field.

Example:
    >>> load_strategy("prophet-trend").__name__
    'ProphetTrend'
    >>> build_strategy("ma-crossover", {"fast": "5"}).params.fast
    5
    >>> load_strategy("no-such-thing")
    Traceback (most recent call last):
    ...
    strategies.base.StrategyError: unknown strategy 'no-such-thing': use one of ma-crossover, prophet-trend, or path/to/file.py:Class or module:Class
"""

from __future__ import annotations

import re

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from strategies.base import Strategy, StrategyError

BUILTIN = {
    "prophet-trend": "strategies.prophet_trend:ProphetTrend",
    "ma-crossover": "strategies.ma_crossover:MovingAverageCrossover",
}


def load_strategy(spec: str) -> type[Strategy]:
    """The :class:`Strategy` subclass named by ``spec``; :class:`StrategyError` with one line otherwise."""
    text = (spec or "").strip()
    if not text:
        raise StrategyError("no strategy given")
    target = BUILTIN.get(text.lower(), text)
    if ":" not in target:
        raise StrategyError(f"unknown strategy {text!r}: use one of {', '.join(sorted(BUILTIN))}, "
                            f"or path/to/file.py:Class or module:Class")
    where, _, name = target.rpartition(":")
    module = _module_from_file(where) if where.endswith(".py") or "/" in where else _module(where)
    cls = getattr(module, name, None)
    if cls is None:
        raise StrategyError(f"{where} has no class {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError(f"{where}:{name} is not a Strategy (subclass strategies.Strategy)")
    if not dataclasses.is_dataclass(cls.Params):
        raise StrategyError(f"{where}:{name}.Params must be a dataclass of parameters")
    return cls


def _module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise StrategyError(f"no module named {name!r} (for a file, give path/to/file.py:Class)") from None
        raise StrategyError(f"cannot import {name}: {exc}") from None
    except Exception as exc:  # a user's module failing at import: one line, not a traceback
        raise StrategyError(f"cannot import {name}: {type(exc).__name__}: {exc}") from None


def _module_from_file(path_text: str) -> types.ModuleType:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise StrategyError(f"no such strategy file: {path}")
    resolved = path.resolve()
    try:
        source = resolved.read_bytes()  # read once: the bytes that run are the bytes hashed and pinned
    except OSError as exc:
        raise StrategyError(f"cannot read {path}: {exc}") from None
    digest = hashlib.sha256(source).hexdigest()
    # One module per file and content, so two user files with the same stem never shadow each other, and an
    # edited file is loaded afresh rather than served from an earlier import in the same process.
    name = f"user_strategy_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}_{digest[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(resolved))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(resolved)
    module.__strategy_source__ = source
    sys.modules[name] = module
    try:
        exec(compile(source, str(resolved), "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise StrategyError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    return module


def strategy_source(cls: type[Strategy]) -> tuple[Path, bytes] | None:
    """The file a user's strategy class was loaded from and the exact bytes that ran, or ``None`` for a class of
    this package (its code is the package's version). A backtest pins these bytes into its run folder.

    >>> from strategies.prophet_trend import ProphetTrend
    >>> strategy_source(ProphetTrend) is None
    True
    """
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__.split(".")[0] in _PACKAGES:
        return None
    source = getattr(module, "__strategy_source__", None)
    where = getattr(module, "__file__", None)
    if source is None and where:  # a user's module:Class import (e.g. user_strategies.x in the function zip)
        source = Path(where).read_bytes()
    return (Path(where), source) if where and source is not None else None


def sha256_of(source: bytes) -> str:
    """``sha256:<hex>`` of a strategy file's bytes, as config.toml records it.

    >>> sha256_of(b"")
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return "sha256:" + hashlib.sha256(source).hexdigest()


_PACKAGES = {"strategies", "marketdata", "brokers", "backtests", "live", "deploy", "clitools"}


def param_fields(cls: type[Strategy]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls.Params)}


def coerce(cls: type[Strategy], name: str, value: Any) -> Any:
    """``value`` (text, or a TOML scalar) as the type of ``cls.Params`` field ``name``.

    >>> from strategies.prophet_trend import ProphetTrend
    >>> coerce(ProphetTrend, "max_weight", "none"), coerce(ProphetTrend, "history", "126")
    (None, 126)
    """
    known = param_fields(cls)
    if name not in known:
        raise StrategyError(f"unknown parameter {name!r} for {cls.name}; known: {', '.join(known) or 'none'}")
    hint = typing.get_type_hints(cls.Params).get(name, str)
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if str(value) not in choices:
            raise StrategyError(f"parameter {name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return str(value)
    text = str(value).strip()
    if optional and (value is None or text.lower() in ("none", "off", "")):
        return None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if text.lower() in ("true", "yes", "on", "1"):
                return True
            if text.lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(text) if isinstance(value, str) else int(value)
        if base is float:
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        return text if isinstance(value, str) else value
    except (TypeError, ValueError):
        kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(base, getattr(base, "__name__", str(base)))
        raise StrategyError(f"parameter {name} must be {kind}{' or none' if optional else ''}, got {value!r}") from None


def build_strategy(spec: str | type[Strategy], params: Mapping[str, Any] | None = None,
                   name: str | None = None) -> Strategy:
    """Load ``spec`` and build it with ``params`` (text or typed values); ``name`` renames it (a variant)."""
    cls = load_strategy(spec) if isinstance(spec, str) else spec
    values = {k.strip().replace("-", "_"): v for k, v in (params or {}).items()}
    converted = {k: coerce(cls, k, v) for k, v in values.items()}
    try:
        strategy = cls(cls.Params(**converted))
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"{cls.name}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    if name:
        check_name(name)
        strategy.name = name
    else:
        check_name(strategy.name)
    return strategy


def check_name(name: str) -> str:
    """A strategy name prefixes its order ids: letters, digits, ``-`` and ``_``, at most 20 characters, and no
    part of eight digits (``pt-20240101``): after a shorter name (``pt``) it would read as an order's date, so one
    variant's ids could pass for another's (live/orders.py checks them too).

    >>> check_name("pt-fast")
    'pt-fast'
    >>> check_name("pt-20240101")
    Traceback (most recent call last):
    ...
    strategies.base.StrategyError: strategy name 'pt-20240101' may not hold an 8-digit part (it reads as an order's date in another strategy's ids): use e.g. 'pt-v20240101'
    """
    if not name or len(name) > 20 or not name.isascii() or not name.replace("-", "").replace("_", "").isalnum():
        raise StrategyError(f"strategy name must be 1-20 letters, digits, - or _, got {name!r}")
    if re.search(r"(?:^|[-_])\d{8}", name):
        suggestion = re.sub(r"(^|[-_])(?=\d{8})", lambda m: m.group(1) + "v", name)
        raise StrategyError(f"strategy name {name!r} may not hold an 8-digit part (it reads as an order's date in "
                            f"another strategy's ids): use e.g. {suggestion!r}")
    return name


def parse_param_flags(flags: list[str] | None) -> dict[str, str]:
    """``["top_n=5", "band=0.02"]`` -> ``{"top_n": "5", "band": "0.02"}``.

    >>> parse_param_flags(["top-n=5"])
    {'top_n': '5'}
    """
    out: dict[str, str] = {}
    for flag in flags or []:
        key, sep, value = flag.partition("=")
        if not sep or not key.strip():
            raise StrategyError(f"--param takes key=value, got {flag!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
