"""The strategy flags shared by ``backtests.run`` and ``backtests.sweep``: which strategy, its params, the rules.

Precedence, lowest first: the strategy's defaults, ``--config FILE.toml``, then flags (``--strategy``,
``--param key=value``, ProphetTrend's own flags such as ``--top-n``, and the rules' ``--max-positions``,
``--max-order-notional``, ``--stop-loss``, ``--take-profit``).

Example:
    >>> parser = OneLineErrorParser(prog="demo")
    >>> add_strategy_arguments(parser)
    >>> args = parser.parse_args(["--strategy", "ma-crossover", "--param", "fast=5", "--max-positions", "3"])
    >>> cfg = config_from_args(args)
    >>> cfg.build().params.fast, cfg.rules.max_positions, cfg.rules.max_order_notional
    (5, 3, 25000.0)
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from clitools import OneLineErrorParser
from strategies.cadence import Cadence
from strategies.config import StrategyConfig, rules_from
from strategies.loader import load_strategy, parse_param_flags
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend

# ProphetTrend's own flags, kept from before there was a Strategy interface: they set its params.
PROPHET_FLAGS = ("top_n", "lookback", "history", "horizon", "band", "mode", "refit_every", "cash_fraction",
                 "max_weight", "engine", "changepoint_prior_scale", "bar")
RULE_FLAGS = ("max_positions", "max_order_notional", "stop_loss", "take_profit", "capital")
DEFAULTS = StrategyParams()


def _optional(text: str) -> str:
    return text  # converted (and checked) by the rulebook, which knows 'none'


def add_strategy_arguments(parser: argparse.ArgumentParser, *, prophet_flags: bool = True) -> None:
    g = parser.add_argument_group("strategy (defaults < --config < flags)")
    g.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                   help="strategy, params, cadence, rules and universe from a config file (a run's config.toml)")
    g.add_argument("--strategy", default=None, metavar="SPEC",
                   help="prophet-trend (default), ma-crossover, path/to/file.py:Class or module:Class")
    g.add_argument("--param", action="append", default=None, metavar="KEY=VALUE",
                   help="a parameter of the strategy (repeatable), e.g. --param top_n=5")
    g.add_argument("--name", default=None, help="the strategy's name (prefix of its order ids); for variants")
    g.add_argument("--cadence", default=None, metavar="daily|Nmin",
                   help="when the strategy decides: daily (default) or every N minutes dividing the session, e.g. "
                        "15min (intraday bars: decides at every slot from 09:45 to 15:45)")
    r = parser.add_argument_group("rules (the same in the live cycle: MAX_POSITIONS, MAX_ORDER_NOTIONAL, ...)")
    r.add_argument("--max-positions", type=_optional, default=None,
                   help="most names held at once; 'none' for no limit (default: 20)")
    r.add_argument("--max-order-notional", type=_optional, default=None,
                   help="largest value of one order; 'none' for no limit (default: 25000)")
    r.add_argument("--stop-loss", type=_optional, default=None,
                   help="bracket stop this far below a buy's price, e.g. 0.02 (default: none)")
    r.add_argument("--take-profit", type=_optional, default=None,
                   help="bracket take-profit this far above a buy's price, e.g. 0.4 (default: none)")
    r.add_argument("--capital", type=_optional, default=None,
                   help="most this strategy may have invested at once, e.g. 50000 for a variant sharing an "
                        "account; buys are sized on min(buying power, capital - own exposure) (default: none)")
    if prophet_flags:
        s = parser.add_argument_group("ProphetTrend parameters (same as --param KEY=VALUE)")
        s.add_argument("--top-n", type=int, default=None, help=f"keep the top N symbols by momentum ({DEFAULTS.top_n})")
        s.add_argument("--lookback", type=int, default=None, help=f"momentum window in bars ({DEFAULTS.lookback})")
        s.add_argument("--history", type=int, default=None, help=f"closes Prophet is fitted on ({DEFAULTS.history})")
        s.add_argument("--horizon", type=int, default=None, help=f"forecast horizon in business days ({DEFAULTS.horizon})")
        s.add_argument("--band", type=float, default=None, help=f"no-signal band around the forecast ({DEFAULTS.band})")
        s.add_argument("--mode", choices=["revert", "follow"], default=None, help="revert (default): buy below forecast")
        s.add_argument("--refit-every", type=int, default=None,
                       help=f"refit Prophet every N business days ({DEFAULTS.refit_every})")
        s.add_argument("--cash-fraction", type=float, default=None,
                       help=f"share of buying power used ({DEFAULTS.cash_fraction})")
        s.add_argument("--max-weight", default=None, help="cap one new position at this fraction of equity (none)")
        s.add_argument("--engine", choices=["exact", "stan"], default=None,
                       help="forecast engine: exact (default) or stan (stock Prophet, the reference)")
        s.add_argument("--bar", choices=["1m", "5m", "15m", "1h", "1d"], default=None,
                       help="bar size history, lookback, horizon and refit_every are counted in (1d)")
        s.add_argument("--changepoint-prior-scale", type=float, default=None,
                       help=f"Prophet's changepoint prior scale ({DEFAULTS.changepoint_prior_scale})")


def config_from_args(args: argparse.Namespace) -> StrategyConfig:
    """The :class:`StrategyConfig` the flags describe (see the module docstring for precedence)."""
    base = StrategyConfig.load(args.config) if getattr(args, "config", None) else StrategyConfig()
    spec = args.strategy or base.strategy
    cls = load_strategy(spec)
    params: dict[str, Any] = dict(base.params) if spec == base.strategy else {}
    prophet = {k: getattr(args, k) for k in PROPHET_FLAGS if getattr(args, k, None) is not None}
    if prophet and not issubclass(cls, ProphetTrend):
        flag = "--" + next(iter(prophet)).replace("_", "-")
        raise ValueError(f"{flag} is a prophet-trend flag; give {cls.name}'s parameters with --param KEY=VALUE")
    params.update(prophet)
    params.update(parse_param_flags(getattr(args, "param", None)))
    rules = rules_from({k: getattr(args, k) for k in RULE_FLAGS if getattr(args, k, None) is not None},
                       lambda key: "--" + key.replace("_", "-"), base=base.rules)
    cadence = base.cadence
    if getattr(args, "cadence", None):
        try:
            cadence = Cadence.parse(args.cadence)
        except ValueError as exc:
            raise ValueError(f"--cadence: {exc}") from None
    config = base.with_(strategy=spec, params=params, rules=rules, cadence=cadence,
                        name=getattr(args, "name", None) or base.name)
    config.build()  # fail on a bad value before anything runs
    return config


def prophet_field_names() -> set[str]:
    return {f.name for f in fields(StrategyParams)}
