"""One config file for a strategy, read by every home: the strategy, its params, the cadence, the rules, the universe.

``--config FILE.toml`` on ``backtests.run`` and ``backtests.sweep``, ``STRATEGY_CONFIG`` in the live cycle and
``--config`` on ``deploy build/up`` all read this file; flags and environment variables override it. Every
backtest writes the ``config.toml`` it ran with, so backtesting it again reproduces the run and ``deploy up
--config`` deploys exactly what was backtested. ``none`` (a string, since TOML has no null) turns a limit off.

```toml
strategy = "prophet-trend"      # a built-in name, path/to/file.py:Class or module:Class
name = "prophet-trend"          # prefix of order ids and journal entries (a variant gets its own)
cadence = "daily"
decision_time = "15:45"         # New York time
universe = ["AAPL", "MSFT"]     # or "sp500"

[params]                        # the strategy's own Params fields
top_n = 10

[rules]                         # the same in both homes
max_positions = 20
max_order_notional = 25000.0
stop_loss = "none"
take_profit = "none"
capital = "none"               # dollars this variant may have invested (its share of a shared account)

[backtest]                      # read by the backtest only
data = "sample"
start = "2021-01-01"
end = "2022-12-28"
cash = 100000.0
commission = 0.001
benchmark = "auto"
```

Example:
    >>> cfg = StrategyConfig.from_mapping({"strategy": "ma-crossover", "params": {"fast": 5}})
    >>> cfg.build().params.fast, cfg.rules.max_positions
    (5, 20)
    >>> StrategyConfig.from_mapping({"strategy": "ma-crossover", "colour": "red"})
    Traceback (most recent call last):
    ...
    strategies.config.ConfigFileError: unknown key 'colour' in the config; known keys: strategy, name, cadence, decision_time, universe, params, rules, backtest
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from strategies.base import Strategy, StrategyError
from strategies.cadence import Cadence
from strategies.loader import build_strategy, coerce, load_strategy
from strategies.rules import Rules

TOP_KEYS = ("strategy", "name", "cadence", "decision_time", "universe", "params", "rules", "backtest")
BACKTEST_KEYS = ("data", "symbols", "start", "end", "cash", "commission", "benchmark")
RULE_KEYS = tuple(f.name for f in dataclasses.fields(Rules))


class ConfigFileError(StrategyError):
    """A config file that cannot be read, or a key or value in it that is wrong; one line naming it."""


@dataclass(frozen=True)
class StrategyConfig:
    strategy: str = "prophet-trend"
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    rules: Rules = field(default_factory=Rules)
    cadence: Cadence = field(default_factory=Cadence)
    universe: tuple[str, ...] | str | None = None  # symbols, "sp500", or None (the data's symbols)
    backtest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "StrategyConfig":
        """Read a TOML config file; :class:`ConfigFileError` names the file and the bad key."""
        path = Path(path)
        if not path.is_file():
            raise ConfigFileError(f"no such config file: {path}")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigFileError(f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
        try:
            return cls.from_mapping(values, base_dir=path.parent)
        except ConfigFileError as exc:
            raise ConfigFileError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base_dir: Path | None = None) -> "StrategyConfig":
        unknown = [k for k in values if k not in TOP_KEYS]
        if unknown:
            raise ConfigFileError(f"unknown key {unknown[0]!r} in the config; known keys: {', '.join(TOP_KEYS)}")
        spec = _text(values.get("strategy", "prophet-trend"), "strategy")
        if base_dir is not None and ".py:" in spec and not Path(spec.split(":")[0]).is_absolute():
            candidate = (base_dir / spec.split(":")[0])
            if candidate.is_file():  # a file next to the config; otherwise relative to the working directory
                spec = f"{candidate.resolve()}:{spec.rsplit(':', 1)[1]}"
        for table in ("params", "rules", "backtest"):
            if table in values and not isinstance(values[table], Mapping):
                raise ConfigFileError(f"[{table}] must be a table of key = value")
        try:
            cls_ = load_strategy(spec)
            params = {k: coerce(cls_, k, _none(v)) for k, v in dict(values.get("params", {})).items()}
        except ConfigFileError:
            raise
        except StrategyError as exc:
            raise ConfigFileError(str(exc)) from None
        rules = rules_from(values.get("rules", {}), lambda key: f"rules.{key}")
        try:
            cadence = Cadence.parse(values.get("cadence"), values.get("decision_time"))
        except ValueError as exc:
            raise ConfigFileError(str(exc)) from None
        universe = values.get("universe")
        if isinstance(universe, str):
            if universe.strip().lower() != "sp500":
                raise ConfigFileError(f"universe must be a list of symbols or \"sp500\", got {universe!r}")
            universe = "sp500"
        elif universe is not None:
            if not isinstance(universe, list) or not all(isinstance(s, str) and s.strip() for s in universe):
                raise ConfigFileError("universe must be a list of symbols or \"sp500\"")
            universe = tuple(s.strip().upper() for s in universe)
        backtest = dict(values.get("backtest", {}))
        bad = [k for k in backtest if k not in BACKTEST_KEYS]
        if bad:
            raise ConfigFileError(f"unknown key 'backtest.{bad[0]}'; known: {', '.join(BACKTEST_KEYS)}")
        config = cls(spec, values.get("name"), params, rules, cadence, universe, backtest)
        config.build()  # every value must make a valid strategy before anything runs
        return config

    def build(self) -> Strategy:
        """The strategy this config names, with its params and name."""
        try:
            return build_strategy(self.strategy, self.params, name=self.name)
        except ConfigFileError:
            raise
        except StrategyError as exc:
            raise ConfigFileError(str(exc)) from None

    def with_(self, **changes: Any) -> "StrategyConfig":
        return dataclasses.replace(self, **changes)

    def to_mapping(self) -> dict[str, Any]:
        """Plain values, ``None`` written as ``"none"`` (TOML has no null)."""
        strategy = self.build()
        out: dict[str, Any] = {"strategy": self.strategy, "name": strategy.name}
        out.update(self.cadence.to_dict())
        if self.universe is not None:
            out["universe"] = self.universe if isinstance(self.universe, str) else list(self.universe)
        out["params"] = {k: _null(v) for k, v in dataclasses.asdict(strategy.params).items()}
        out["rules"] = {k: _null(v) for k, v in self.rules.to_dict().items()}
        if self.backtest:
            out["backtest"] = {k: _null(v) for k, v in self.backtest.items()}
        return out

    def to_toml(self) -> str:
        import tomli_w  # only the writers (backtests, deploy) need it

        return tomli_w.dumps(self.to_mapping())


def rules_from(values: Mapping[str, Any], label=lambda key: key, base: Rules | None = None) -> Rules:
    """A :class:`Rules` from a mapping of text or TOML values (``none``/``off`` turn a limit off)."""
    changes: dict[str, Any] = {}
    for key, raw in dict(values).items():
        if key not in RULE_KEYS:
            raise ConfigFileError(f"unknown key {label(key)!r}; known: {', '.join(RULE_KEYS)}")
        value = _none(raw)
        if value is not None:
            try:
                value = int(str(value)) if key == "max_positions" else float(value)
            except (TypeError, ValueError):
                kind = "a whole number" if key == "max_positions" else "a number"
                raise ConfigFileError(f"{label(key)} must be {kind} or none, got {raw!r}") from None
        changes[key] = value
    try:
        return dataclasses.replace(base or Rules(), **changes)
    except ValueError as exc:
        raise ConfigFileError(str(exc)) from None


def _none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in ("none", "off") else value


def _null(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return list(value)
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigFileError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()
