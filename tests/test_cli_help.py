"""Every command's --help reads as plain text: no reST double backticks, no "(default: None)", no default said
twice, and every subcommand has a description."""

from __future__ import annotations

import argparse
import re

import pytest


def _parsers():
    from backtests.run import build_parser as backtest
    from backtests.sweep import build_parser as sweep
    from deploy.__main__ import make_parser as deploy
    from live.__main__ import build_parser as live
    from live.cli import build_parser as lambda_cli
    from marketdata.__main__ import build_parser as marketdata

    for make in (backtest, sweep, deploy, live, lambda_cli, marketdata):
        yield from _walk(make())


def _walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


HELPS = [(p.prog, p) for p in _parsers()]


@pytest.mark.parametrize("prog,parser", HELPS, ids=[prog for prog, _ in HELPS])
def test_help_is_plain_text(prog, parser):
    text = parser.format_help()
    assert "``" not in text, prog
    assert "(default: None)" not in text, prog
    flat = re.sub(r"\s+", " ", text)
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", flat), prog
    assert parser.description, f"{prog} --help has no description"


def test_every_command_is_scanned():
    progs = {prog for prog, _ in HELPS}
    assert {"python -m live report", "python -m deploy up", "python -m deploy pause", "python -m deploy resume",
            "python lambda_function.py"} <= progs
    assert len(progs) >= 15
