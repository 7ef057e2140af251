"""What strategy the function runs: the config a backtest wrote (or flags), packed into the function zip.

``deploy build/up --config runs/<run>/config.toml`` deploys exactly what was backtested: the config goes into the
zip as ``strategy_config.toml`` (the function's ``STRATEGY_CONFIG``), a user's strategy file goes beside it as
``user_strategies/<file>.py``, and the schedule is derived from the config's cadence (``deploy.schedule``), so
nothing else can make the deploy disagree with the backtest. A run's config names its pinned copy of a user's
file (``strategy.py``) with its sha256: that copy is what ships, after the hash is checked, and the packed config
keeps the hash, so the function checks it again at every cycle; ``deploy status`` shows it (``STRATEGY_SHA256``).

Example:
    >>> bundle = strategy_bundle(None, "ma-crossover", ["fast=5"], None)
    >>> bundle.deployed_strategy, sorted(bundle.files)
    ('ma-crossover', ['strategy_config.toml'])
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from clitools import UserError
from strategies.base import StrategyError
from strategies.config import StrategyConfig
from strategies.loader import load_strategy, parse_param_flags, strategy_source

CONFIG_NAME = "strategy_config.toml"
USER_PACKAGE = "user_strategies"
RESEARCH_ONLY = frozenset({"backtrader", "matplotlib", "dask", "distributed", "jupyter", "IPython", "pytest", "moto",
                           "backtests", "deploy", "notebooks", "tests", "benchmarks"})


@dataclass(frozen=True)
class StrategyBundle:
    config: StrategyConfig  # as given (a user file by its path here)
    deployed_strategy: str = ""  # the spec the function loads (a user file as a module of user_strategies)
    files: dict[str, bytes] = field(default_factory=dict)  # extra files for the function zip, by name in the zip
    third_party: frozenset[str] = frozenset()  # imports of a user file that the layer must provide
    strategy_sha256: str | None = None  # of a user's strategy file as packed (the function's STRATEGY_SHA256)


def strategy_bundle(config_path: Path | None, strategy: str | None, params: list[str] | None,
                    name: str | None) -> StrategyBundle:
    """Read ``--config`` (or the defaults), apply ``--strategy``/``--param``/``--name``, and pack it."""
    try:
        base = StrategyConfig.load(config_path) if config_path else StrategyConfig()
        spec = strategy or base.strategy
        values = dict(base.params) if spec == base.strategy else {}
        values.update(parse_param_flags(params))
        config = base.with_(strategy=spec, params=values, name=name or base.name, backtest={})
        config.build()
    except StrategyError as exc:
        raise UserError(str(exc)) from None
    import tomli_w

    files: dict[str, bytes] = {}
    third_party: set[str] = set()
    mapping = config.to_mapping()  # built here, where a user's file is still at its path
    where, _, cls_name = config.strategy.rpartition(":")
    if where.endswith(".py") or "/" in where:
        # The bytes the config's check verified against its strategy_sha256 (a run's pinned copy), not a re-read.
        path, content = strategy_source(load_strategy(config.strategy))
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text") from None
        third_party = _checked_imports(path, text)
        module = f"{USER_PACKAGE}.{Path(where).stem}"
        files[f"{USER_PACKAGE}/__init__.py"] = b""
        files[f"{USER_PACKAGE}/{Path(where).stem}.py"] = content
        mapping["strategy"] = f"{module}:{cls_name}"
    files[CONFIG_NAME] = tomli_w.dumps(mapping).encode("utf-8")
    return StrategyBundle(config, mapping["strategy"], files, frozenset(third_party), mapping.get("strategy_sha256"))


def _checked_imports(path: Path, text: str) -> set[str]:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise UserError(f"{path} is not valid Python: {exc.msg} (line {exc.lineno})") from None
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    bad = sorted(tops & RESEARCH_ONLY)
    if bad:
        raise UserError(f"{path} imports {', '.join(bad)}, which never ship to Lambda")
    project = {"strategies", "marketdata", "brokers", "live", "clitools", "lambda_function"}
    return {t for t in tops if t not in project and t not in sys.stdlib_module_names and t != "__future__"}
