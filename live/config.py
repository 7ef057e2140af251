"""The live cycle's configuration: one frozen dataclass read from environment variables.

Every variable is documented in ``docs/live.md``. Malformed values raise :class:`ConfigError` with one line that
names the variable. Secrets are not part of the configuration: only *where* to find them (see ``live.secrets``).

The strategy comes from ``STRATEGY_CONFIG`` (the same TOML file a backtest writes and reads), then ``STRATEGY``
(a name, ``path/to/file.py:Class`` or ``module:Class``), ``STRATEGY_NAME``, ``STRATEGY_<PARAM>`` for its
parameters, the rules' ``MAX_POSITIONS``, ``MAX_ORDER_NOTIONAL``, ``STOP_LOSS``, ``TAKE_PROFIT``, ``CAPITAL``, and
``CADENCE``/``DECISION_TIME``: environment variables override the file, as flags do in the backtest.

Example:
    >>> cfg = LiveConfig.from_env({"STRATEGY_TOP_N": "5", "MAX_POSITIONS": "8", "STATE_DIR": "/tmp/pt"})
    >>> cfg.params.top_n, cfg.max_positions, cfg.broker, str(cfg.paper_db)
    (5, 8, 'paper', '/tmp/pt/paper.sqlite')
    >>> LiveConfig.from_env({"MAX_ORDER_NOTIONAL": "lots"})
    Traceback (most recent call last):
    ...
    live.config.ConfigError: MAX_ORDER_NOTIONAL must be a number or none, got 'lots'
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from strategies.base import Strategy, StrategyError
from strategies.cadence import Cadence
from strategies.config import StrategyConfig, rules_from
from strategies.loader import coerce, load_strategy
from strategies.rules import Rules

BROKERS = ("auto", "paper", "alpaca")
_S3_JOURNAL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")  # S3's bucket naming rule
KEY_SOURCES = ("APCA_API_KEY_ID", "ALPACA_SECRET_NAME", "ALPACA_SSM_PARAMETER")
SLOT_MINUTES = 15  # the schedule slot in client order ids; a retry inside the slot reuses the same ids
RULE_VARIABLES = {"max_positions": "MAX_POSITIONS", "max_order_notional": "MAX_ORDER_NOTIONAL",
                  "stop_loss": "STOP_LOSS", "take_profit": "TAKE_PROFIT", "capital": "CAPITAL"}
# STRATEGY_SHA256: set by `deploy up` for `deploy status`; the packed config's strategy_sha256 is what is checked
NOT_PARAMS = {"STRATEGY_CONFIG", "STRATEGY_NAME", "STRATEGY_STOP_LOSS", "STRATEGY_TAKE_PROFIT", "STRATEGY_SHA256",
              "STRATEGY_TIMEOUT_SECONDS"}
DEFAULT_STRATEGY_TIMEOUT_SECONDS = 600.0  # decide()'s time budget (live.time_budget); Lambda's deadline caps it


class ConfigError(ValueError):
    """A missing or malformed setting; the message is one line naming the variable."""


class StrategyLoadError(ConfigError):
    """The strategy's file or module could not be imported (it raised, or called sys.exit): journaled as a
    strategy error, not a configuration one."""


class InputError(ValueError):
    """A malformed invocation (event or command line), e.g. an unparseable ``now``."""


@dataclass(frozen=True)
class LiveConfig:
    strategy_config: StrategyConfig  # strategy, params, rules, cadence, universe: what a backtest ran with
    broker: str                      # paper | alpaca (auto resolved)
    alpaca_paper: bool               # APCA_PAPER: Alpaca's paper endpoint unless explicitly false
    trading_enabled: bool            # False: every cycle is a dry run (the kill switch)
    trading_enabled_reason: str
    market_data: str                 # sample | yfinance | csv:PATH
    universe: tuple[str, ...] | None  # None: the data provider's default candidates
    stale_order_minutes: float
    trade_after_open_minutes: int
    trade_before_close_minutes: int
    state_dir: Path
    paper_db: Path
    paper_cash: float
    paper_commission: float
    journal: str                     # a JSON-lines file path or s3://bucket/prefix
    sandboxed: bool                  # in Lambda or a read-only working directory: write only under the temp dir
    cache_dir: Path | None           # yfinance cache; None: marketdata's default (PROPHETTREND_CACHE or user cache)
    log_level: str
    universe_source: str = "UNIVERSE"  # where the universe came from, for error messages
    strategy_timeout_seconds: float = DEFAULT_STRATEGY_TIMEOUT_SECONDS  # STRATEGY_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "LiveConfig":
        env = dict(os.environ if env is None else env)
        read = _Reader(env)
        strategy_config = _strategy_config(read)
        broker = read.choice("BROKER", "auto", BROKERS)
        has_keys = any(env.get(k, "").strip() for k in KEY_SOURCES)
        if broker == "auto":
            broker = "alpaca" if has_keys else "paper"
        alpaca_paper = read.boolean("APCA_PAPER", True)
        enabled, reason = _kill_switch(read, broker, alpaca_paper)
        sandboxed = _sandboxed(env)
        state_dir = Path(read.text("STATE_DIR", "") or default_state_dir(env))
        universe = effective_universe(env, strategy_config.universe)
        config = cls(
            strategy_config=strategy_config,
            broker=broker,
            alpaca_paper=alpaca_paper,
            trading_enabled=enabled,
            trading_enabled_reason=reason,
            market_data=read.text("MARKET_DATA", "sample"),
            universe=universe,
            universe_source="UNIVERSE" if "UNIVERSE" in env else "the config's universe",
            stale_order_minutes=read.number("STALE_ORDER_MINUTES", 30.0, minimum=0.0),
            trade_after_open_minutes=read.integer("TRADE_AFTER_OPEN_MINUTES", 15, minimum=0),
            trade_before_close_minutes=read.integer("TRADE_BEFORE_CLOSE_MINUTES", 5, minimum=0),
            state_dir=state_dir,
            paper_db=Path(read.text("PAPER_DB", "") or state_dir / "paper.sqlite"),
            paper_cash=read.number("PAPER_CASH", 100_000.0, minimum=0.01),
            paper_commission=read.number("PAPER_COMMISSION", 0.0, minimum=0.0),
            journal=read.text("JOURNAL", "") or str(state_dir / "journal.jsonl"),
            sandboxed=sandboxed,
            cache_dir=Path(read.text("PROPHETTREND_CACHE", "")) if read.text("PROPHETTREND_CACHE", "")
            else (state_dir / "cache" if sandboxed else None),
            log_level=read.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
            strategy_timeout_seconds=read.number("STRATEGY_TIMEOUT_SECONDS", DEFAULT_STRATEGY_TIMEOUT_SECONDS,
                                                 minimum=0.001),
        )
        if config.journal.startswith("s3://") and not _S3_JOURNAL.fullmatch(config.journal):
            raise ConfigError(f"JOURNAL must be s3://bucket/prefix (a valid bucket name) or a file path, "
                              f"got {config.journal!r}")
        if config.market_data not in ("sample", "yfinance", "alpaca") and not config.market_data.startswith("csv:"):
            raise ConfigError(f"MARKET_DATA must be sample, yfinance, alpaca or csv:PATH, got {config.market_data!r}")
        if config.paper_commission >= 0.1:
            raise ConfigError(f"PAPER_COMMISSION must be a fraction below 0.1, got {config.paper_commission}")
        if broker == "alpaca" and not has_keys:
            raise ConfigError("BROKER=alpaca needs Alpaca keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, "
                              "or ALPACA_SECRET_NAME (Secrets Manager) or ALPACA_SSM_PARAMETER (SSM)")
        return config

    def build_strategy(self) -> Strategy:
        """A fresh instance of the configured strategy (one per cycle: a strategy may keep state while deciding)."""
        return self.strategy_config.build()

    @property
    def params(self) -> Any:
        """The strategy's parameters (a dataclass)."""
        return self.build_strategy().params

    @property
    def rules(self) -> Rules:
        return self.strategy_config.rules

    @property
    def execution(self) -> "Execution":
        """The execution model of the config's ``[backtest]`` table (strategies.execution): the paper broker fills
        through it and the cycle sizes buys with its costs; ``PAPER_COMMISSION``, when set, is the commission."""
        import dataclasses

        from strategies.execution import Execution

        try:
            model = Execution.from_mapping(self.strategy_config.backtest)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"STRATEGY_CONFIG [backtest]: {exc}") from None
        if self.paper_commission:
            model = dataclasses.replace(model, costs=dataclasses.replace(model.costs, commission=self.paper_commission))
        return model

    @property
    def bar(self) -> str:
        """The strategy's bar size (``1d`` unless it trades intraday bars)."""
        return str(getattr(self.params, "bar", None) or "1d")

    @property
    def cadence(self) -> Cadence:
        return self.strategy_config.cadence

    @property
    def max_positions(self) -> int | None:
        return self.rules.max_positions

    @property
    def max_order_notional(self) -> float | None:
        return self.rules.max_order_notional

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values for the journal (holds no secrets: the config never has any)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "strategy_config"}
        out["strategy"] = self.strategy_config.to_mapping()
        out["universe"] = list(self.universe) if self.universe else None
        for key in ("state_dir", "paper_db", "cache_dir"):
            out[key] = None if out[key] is None else str(out[key])
        # the execution model the cycle ran with (fill moment and costs, PAPER_COMMISSION applied): the live
        # report's backtest re-run uses exactly it (live.drift)
        try:
            out["execution"] = self.execution.describe(intraday_bars=self.bar != "1d")
        except ConfigError as exc:  # the cycle fails on it where it sizes; its record still says what it read
            out["execution"] = {"error": str(exc)}
        return out


def effective_universe(env: Mapping[str, str], configured: tuple[str, ...] | str | None = None
                       ) -> tuple[str, ...] | None:
    """The candidates a cycle ranks: ``UNIVERSE`` if set, else the config's ``universe``; ``("SP500",)`` for the
    bundled snapshot, ``None`` for the data's own symbols.

    Set but naming no symbol (``UNIVERSE=""``) is an error, never "every symbol", and so is a symbol no ticker
    can be (the same rule as every price provider, ``marketdata.symbols``):

    >>> effective_universe({"UNIVERSE": " ko, pg "}), effective_universe({}), effective_universe({}, "sp500")
    (('KO', 'PG'), None, ('SP500',))
    >>> effective_universe({"UNIVERSE": ""})
    Traceback (most recent call last):
    ...
    live.config.ConfigError: UNIVERSE is set but names no symbol: list at least one (comma-separated), or sp500, or unset it for the data's symbols
    """
    from marketdata.symbols import split_symbols

    if "UNIVERSE" in env:
        label, listed = "UNIVERSE", [s for s in str(env["UNIVERSE"]).split(",") if s.strip()]
    elif configured is not None:
        label, listed = "the config's universe", ["SP500"] if configured == "sp500" else list(configured)
    else:
        return None
    symbols, junk = split_symbols(listed)
    if junk:
        raise ConfigError(f"{label}: {', '.join(map(repr, junk))} cannot be a ticker symbol")
    if not symbols:
        raise ConfigError("UNIVERSE is set but names no symbol: list at least one (comma-separated), or sp500, "
                          "or unset it for the data's symbols")
    return tuple(symbols)


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``./live_state`` locally; under the temp dir in Lambda or when the working directory is read-only."""
    if _sandboxed(env):
        return Path(tempfile.gettempdir()) / "prophettrend"
    return Path.cwd() / "live_state"


def _sandboxed(env: Mapping[str, str]) -> bool:
    """In Lambda, or anywhere the working directory is read-only: only the temp dir may be written."""
    if env.get("AWS_LAMBDA_FUNCTION_NAME"):
        return True
    try:  # actually try: os.access says yes to root even on a read-only mount's permissions
        with tempfile.TemporaryFile(dir=os.getcwd()):
            return False
    except OSError:
        return True


def _kill_switch(read: "_Reader", broker: str, alpaca_paper: bool) -> tuple[bool, str]:
    explicit = read.env.get("TRADING_ENABLED", "").strip() != ""
    enabled = read.boolean("TRADING_ENABLED", True)
    if not enabled:
        return False, "TRADING_ENABLED=false"
    if broker == "alpaca" and not alpaca_paper and not explicit:
        # Real money needs two explicit settings, so a stray APCA_PAPER=false alone never trades.
        return False, "APCA_PAPER=false (live money) also needs TRADING_ENABLED=true"
    return True, ""


def _strategy_config(read: "_Reader") -> StrategyConfig:
    """The strategy's config: ``STRATEGY_CONFIG`` (a TOML file), overridden by the environment variables."""
    env = read.env
    path = read.text("STRATEGY_CONFIG", "")
    try:
        if path:
            where = Path(path)
            root = env.get("LAMBDA_TASK_ROOT", "")
            if not where.is_absolute() and not where.is_file() and root:
                where = Path(root) / where  # packed into the function zip next to lambda_function.py
            base = StrategyConfig.load(where)
        else:
            base = StrategyConfig()
    except StrategyError as exc:
        kind = StrategyLoadError if "cannot import" in str(exc) else ConfigError
        raise kind(f"STRATEGY_CONFIG: {exc}") from None
    except SystemExit as exc:
        raise StrategyLoadError(f"STRATEGY_CONFIG: its strategy called sys.exit({exc.code!r}) at import") from None
    spec = read.text("STRATEGY", "") or base.strategy
    try:
        cls = load_strategy(spec)
    except StrategyError as exc:
        kind = StrategyLoadError if str(exc).startswith("cannot import") else ConfigError
        raise kind(f"STRATEGY: {exc}") from None
    except SystemExit as exc:  # a strategy module calling sys.exit() at import must not end the invocation
        raise StrategyLoadError(f"STRATEGY: cannot import {spec}: it called sys.exit({exc.code!r})") from None
    params = dict(base.params) if spec == base.strategy else {}
    known = {f.name for f in fields(cls.Params)}
    for name, raw in sorted(env.items()):
        if not name.startswith("STRATEGY_") or name in NOT_PARAMS or not str(raw).strip():
            continue
        key = name[len("STRATEGY_"):].lower()
        if key not in known:
            raise ConfigError(f"{name}: {cls.name} has no parameter {key!r}; known: {', '.join(sorted(known))}")
        try:
            params[key] = coerce(cls, key, str(raw).strip())
        except StrategyError as exc:
            raise ConfigError(str(exc).replace(f"parameter {key} ", f"{name} ")) from None
    rule_values = {key: env[var] for key, var in RULE_VARIABLES.items() if str(env.get(var, "")).strip()}
    for legacy in ("stop_loss", "take_profit"):  # STRATEGY_STOP_LOSS predates the shared rulebook
        value = str(env.get(f"STRATEGY_{legacy.upper()}", "")).strip()
        if value and legacy not in rule_values:
            rule_values[legacy] = value
    try:
        rules = rules_from(rule_values, lambda key: RULE_VARIABLES[key], base=base.rules)
        cadence = Cadence.parse(read.text("CADENCE", "") or base.cadence.kind,
                                read.text("DECISION_TIME", "") or base.cadence.decision_time)
        config = base.with_(strategy=spec, params=params, rules=rules, cadence=cadence,
                            name=read.text("STRATEGY_NAME", "") or base.name)
        config.build()
    except StrategyError as exc:
        message = str(exc)
        for key, var in RULE_VARIABLES.items():
            message = message.replace(f"{key} must", f"{var} must")
        field_name = message.split(": ", 1)[-1].split(" ", 1)[0]
        if field_name in known:  # the params' own check, e.g. "band must be a fraction": name the variable
            message = f"STRATEGY_{field_name.upper()}: {message.split(': ', 1)[-1]}"
        raise ConfigError(message) from None
    except ValueError as exc:
        raise ConfigError(f"CADENCE/DECISION_TIME: {exc}") from None
    return config


class _Reader:
    """Typed reads of environment variables with one-line errors."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name, "").strip()
        return value if value else default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        value = self.text(name, default)
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.text(name, "").lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {self.env[name]!r}")

    def number(self, name: str, default: float | None, *, optional: bool = False, minimum: float | None = None):
        return self._parsed(name, default, float, "a number", optional, minimum)

    def integer(self, name: str, default: int | None, *, optional: bool = False, minimum: int | None = None):
        return self._parsed(name, default, int, "a whole number", optional, minimum)

    def _parsed(self, name: str, default, convert, kind: str, optional: bool, minimum):
        raw = self.text(name, "")
        if not raw:
            return default
        if optional and raw.lower() in ("none", "off"):
            return None
        try:
            value = convert(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {kind}{' or ' + repr('none') if optional else ''}, got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
        return value
