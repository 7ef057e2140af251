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
market_data = "alpaca"          # the live bot's prices (MARKET_DATA) when deployed: sample, yfinance, alpaca, csv:PATH

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
commission = 0.0                # the execution model (docs/execution.md), read by the paper broker and
benchmark = "auto"              # the live sizing too: fill, costs, commission, slippage_bps
fill = "decision"
costs = "alpaca"
slippage_bps = 2.0
```

Example:
    >>> cfg = StrategyConfig.from_mapping({"strategy": "ma-crossover", "params": {"fast": 5}})
    >>> cfg.build().params.fast, cfg.rules.max_positions
    (5, 20)
    >>> StrategyConfig.from_mapping({"strategy": "ma-crossover", "colour": "red"})
    Traceback (most recent call last):
    ...
    strategies.config.ConfigFileError: unknown key 'colour' in the config; known keys: strategy, strategy_sha256, name, cadence, decision_time, universe, market_data, params, rules, backtest
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from strategies.base import Strategy, StrategyError
from strategies.cadence import Cadence
from strategies.loader import build_strategy, coerce, load_strategy, sha256_of, strategy_source
from strategies.rules import Rules

TOP_KEYS = ("strategy", "strategy_sha256", "name", "cadence", "decision_time", "universe", "market_data", "params",
            "rules", "backtest")
MARKET_DATA_SOURCES = ("sample", "yfinance", "alpaca")  # or csv:PATH
PINNED_NAME = "strategy.py"  # a run folder's copy of a user's strategy file
# fill, costs, commission and slippage_bps are the execution model (strategies.execution): the paper broker and the
# live sizing read them too, so a deployed config trades as it was backtested.
BACKTEST_KEYS = ("data", "symbols", "start", "end", "cash", "commission", "benchmark", "fill", "costs", "slippage_bps",
                 "date_format")
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
    market_data: str | None = None  # where the deployed bot reads prices (deploy up's MARKET_DATA)

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
            _check_pinned(cls_, spec, values.get("strategy_sha256"))
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
            if not universe:  # an empty list is a mistake, never "every symbol in the data"
                raise ConfigFileError("universe = [] names no symbol: list at least one, or leave the key out "
                                      "for every symbol in the data")
            universe = tuple(s.strip().upper() for s in universe)
        backtest = dict(values.get("backtest", {}))
        bad = [k for k in backtest if k not in BACKTEST_KEYS]
        if bad:
            raise ConfigFileError(f"unknown key 'backtest.{bad[0]}'; known: {', '.join(BACKTEST_KEYS)}")
        if "symbols" in backtest and not backtest["symbols"]:
            raise ConfigFileError("backtest.symbols names no symbol: list at least one, or leave the key out")
        market_data = values.get("market_data")
        if market_data is not None and (not isinstance(market_data, str) or not (
                market_data in MARKET_DATA_SOURCES or market_data.startswith("csv:"))):
            raise ConfigFileError(f"market_data must be one of {', '.join(MARKET_DATA_SOURCES)} or csv:PATH, "
                                  f"got {market_data!r}")
        config = cls(spec, values.get("name"), params, rules, cadence, universe, backtest, market_data)
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
        out: dict[str, Any] = {"strategy": self.strategy}
        source = strategy_source(type(strategy))
        if source is not None:  # a user's file: the hash of the very bytes that ran
            out["strategy_sha256"] = sha256_of(source[1])
        out["name"] = strategy.name
        out.update(self.cadence.to_dict())
        if self.universe is not None:
            out["universe"] = self.universe if isinstance(self.universe, str) else list(self.universe)
        if self.market_data is not None:
            out["market_data"] = self.market_data
        out["params"] = {k: _null(v) for k, v in dataclasses.asdict(strategy.params).items()}
        out["rules"] = {k: _null(v) for k, v in self.rules.to_dict().items()}
        if self.backtest:
            out["backtest"] = {k: _null(v) for k, v in self.backtest.items()}
        return out

    def to_toml(self) -> str:
        import tomli_w  # only the writers (backtests, deploy) need it

        return tomli_w.dumps(self.to_mapping())

    def pinned(self) -> tuple[str, dict[str, bytes]]:
        """The config.toml text a run folder keeps, and the files beside it: a user's strategy file is copied as
        ``strategy.py`` (the bytes that ran) and the config names that copy, with its sha256, so ``--config``
        runs the copy even after the original is edited, and refuses a copy that was changed.

        >>> text, files = StrategyConfig.from_mapping({"strategy": "ma-crossover"}).pinned()
        >>> text.splitlines()[0], files
        ('strategy = "ma-crossover"', {})
        """
        import tomli_w

        mapping = self.to_mapping()
        where, _, cls_name = self.strategy.rpartition(":")
        source = strategy_source(load_strategy(self.strategy))
        if source is None or not (where.endswith(".py") or "/" in where):
            return tomli_w.dumps(mapping), {}
        mapping["strategy"] = f"{PINNED_NAME}:{cls_name}"  # resolved next to the config file when it is read
        return tomli_w.dumps(mapping), {PINNED_NAME: source[1]}


def _check_pinned(cls: type[Strategy], spec: str, recorded: Any) -> None:
    """A config that records its strategy's sha256 runs only those bytes: a changed file is refused."""
    if recorded is None:
        return
    source = strategy_source(cls)
    if source is None:
        raise ConfigFileError(f"strategy_sha256 pins a user's strategy file, but {spec} is built in")
    now = sha256_of(source[1])
    if str(recorded) != now:
        raise ConfigFileError(f"strategy file {source[0]} has changed since it was pinned (config "
                              f"{str(recorded)[:19]}, file {now[:19]}): restore it, or delete the strategy_sha256 "
                              f"line to run the file as it is now")


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
