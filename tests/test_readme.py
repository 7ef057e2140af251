"""The README's code runs as written, and the defaults and facts it states are the code's.

Every ```python block is executed; every command of every ```bash block is either run (offline-safe ones, in a
scratch folder where they write their files) or named in ``SKIPPED`` with the reason, so a new command in the
README cannot go untested by accident. Expected values come from the code (``RUN_DEFAULTS``,
``StrategyParams()``, ``LiveConfig.from_env``, ``deploy.schedule.schedules_for``, ``live.orders.client_order_id``),
never typed here a second time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# Commands (by prefix) the tests do not run, and why; everything else in a bash block runs.
SKIPPED = {
    "python -m pip install": "installs from the package index (network)",
    "pip install": "installs from the package index (network)",
    "python -m pytest": "runs this very suite",
    "export APCA_API_KEY_ID": "real Alpaca keys",
    "python -m marketdata fetch": "downloads from Yahoo (network); tests/test_marketdata_cli.py runs it on recorded "
                                  "responses",
    "python -m backtests.run --data yfinance": "downloads from Yahoo (network); tests/test_marketdata_yahoo.py",
    "python -m deploy build": "downloads the layer's wheels from the package index (network); "
                              "tests/test_deploy_build.py and tests/test_deploy_artifact.py build offline",
    "python -m deploy up": "calls AWS; tests/test_deploy_aws.py runs it against moto",
    "python -m deploy invoke": "calls AWS",
    "python -m deploy status": "calls AWS; tests/test_deploy_aws.py and tests/test_pinned_strategy.py (moto)",
    "python -m backtests.sweep": "a 6-cell walk-forward over four years (minutes); tests/test_sweep.py sweeps "
                                 "short windows through the same entry point",
}


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def commands() -> list[tuple[str, str]]:
    """(command, its trailing comment) for every command of every bash block, ``a && b`` split in two."""
    found = []
    for body in blocks("bash"):
        for line in body.splitlines():
            text, _, comment = line.partition("  #")
            for part in text.split("&&"):
                if part.strip():
                    found.append((" ".join(part.split()), comment.strip()))
    return found


def skip_reason(command: str) -> str | None:
    return next((why for prefix, why in SKIPPED.items() if command.startswith(prefix)), None)


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    start = README.index(title)
    end = README.find("\n" + title.split(" ", 1)[0] + " ", start + len(title))
    return README[start:end if end > 0 else None]


# --- the code blocks run --------------------------------------------------------------------------------------

def test_every_bash_command_is_run_or_skipped_with_a_reason():
    listed = commands()
    assert len(listed) >= 10
    for command, _ in listed:
        assert command.startswith(("python", "pip", "export")), command
    assert all(skip_reason(c) or c.startswith(RUN_PREFIXES) for c, _ in listed), \
        [c for c, _ in listed if not (skip_reason(c) or c.startswith(RUN_PREFIXES))]


RUN_PREFIXES = ("python -m backtests.run", "python lambda_function.py", "python -m marketdata info")


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> list[tuple[str, str, subprocess.CompletedProcess]]:
    """Every offline-safe command, in README order, in one scratch folder (the lambda replays share its state)."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copy(ROOT / "lambda_function.py", work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY", "BROKER",
                                                                  "UNIVERSE", "MARKET_DATA", "STATE_DIR"))}
    env.update(PYTHONPATH=str(ROOT), PROPHETTREND_CACHE=str(work / "cache"))
    out = []
    for command, comment in commands():
        if skip_reason(command):
            continue
        argv = shlex.split(command)
        argv[0] = sys.executable
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        out.append((command, comment, done))
    return out


def test_offline_commands_run_as_written(ran):
    assert [c for c, _, _ in ran if c.startswith("python lambda_function.py")], "the live replays are run"
    for command, _, done in ran:
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, command


def test_the_live_replays_do_what_their_comments_say(ran):
    replays = [(comment, json.loads(done.stdout)) for c, comment, done in ran if c.startswith("python lambda_function")]
    assert len(replays) == 3
    for comment, summary in replays:
        status = next(word for word in ("traded", "no_change", "market_closed", "dry_run") if word in comment
                      or (word == "traded" and "buys" in comment))
        assert summary["status"] == status, (comment, summary["status"])
        bought = re.search(r"buys (\d+) stocks", comment)
        if bought:
            assert sum(o["side"] == "buy" for o in summary["orders"]) == int(bought.group(1))
    assert all(not o["new"] for o in replays[1][1]["orders"])  # "nothing doubled"


def test_the_quickstart_table_is_what_the_default_run_prints(ran):
    printed = next(done.stdout for c, _, done in ran if c == "python -m backtests.run")
    shown = next(body for lang, body in FENCE.findall(README) if lang == "text" and "backtest" in body)
    def cells(text: str) -> dict[str, list[str]]:  # label -> the strategy and benchmark columns
        split = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()[2:]]
        return {row[0]: row[1:] for row in split if not row[0].startswith(("note:", "wrote", "warning:"))}

    rows, compared = cells(printed), 0
    for label, values in cells(shown).items():
        if label in rows:
            assert values == rows[label], label
            compared += 1
    assert compared >= 10  # rows the code renames or adds are the reports' business; the rest must agree
    assert shown.splitlines()[0] == printed.splitlines()[0]


def test_the_python_blocks_run_and_the_strategy_snippet_backtests(tmp_path):
    from backtests.run import cli

    python = blocks("python")
    assert python
    for number, body in enumerate(python):
        namespace: dict = {}
        exec(compile(body, f"README.md python block {number + 1}", "exec"), namespace)
    # the strategy snippet as a user's file, through the real entry point (plots are the reports' work: #18)
    snippet = next(body for body in python if "class TopTwo" in body)
    (tmp_path / "top_two.py").write_text(snippet)
    out = tmp_path / "run"
    assert cli(["--strategy", f"{tmp_path / 'top_two.py'}:TopTwo", "--symbols", "AAPL,KO,PG,MSFT", "--start",
                "2022-09-01", "--quiet", "--no-plot", "--out", str(out)]) == 0
    trades = (out / "trades.csv").read_text().splitlines()
    assert len(trades) > 1 and all(",buy," in t or ",sell," in t for t in trades[1:])


# --- the defaults the README states are the code's --------------------------------------------------------------

def table(after: str) -> list[list[str]]:
    """The cells of the first markdown table after the text ``after``."""
    start = README.index(after)
    rows = []
    for line in README[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and rule


def value(text: str):
    text = text.strip().strip("`")
    if text.lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def test_the_backtest_flag_defaults_are_the_codes():
    from backtests.run import RUN_DEFAULTS
    from strategies.config import StrategyConfig
    from strategies.params import StrategyParams
    from strategies.rules import Rules

    code = {**RUN_DEFAULTS, **dataclasses.asdict(StrategyParams()), **Rules().to_dict(),
            "strategy": StrategyConfig().strategy}
    checked = 0
    for flags_cell, default_cell, _ in table("## Research: `python -m backtests.run`"):
        flags = re.findall(r"`--([a-z-]+)`", flags_cell)
        values = [v for v in default_cell.split(",") if v.strip()] if default_cell else []
        for flag, text in zip(flags, values):
            key = flag.replace("-", "_")
            if key not in code:
                continue
            expected = code[key]
            expected = float(expected) if isinstance(expected, (int, float)) and not isinstance(expected, bool) \
                else expected
            assert value(text) == expected, f"--{flag}: README {text.strip()}, code {code[key]!r}"
            checked += 1
    assert checked >= 18
    quick = section("## Quickstart")
    assert f"from {RUN_DEFAULTS['start']} to {RUN_DEFAULTS['end']}" in quick
    assert f"max {Rules().max_positions} positions, {Rules().max_order_notional:,.0f} per order" in quick
    assert f"with the {StrategyParams().engine}\nengine" in quick or f"with the {StrategyParams().engine} engine" in quick


def test_the_live_variable_defaults_are_the_codes(tmp_path):
    from live.components import candidate_universe
    from live.config import LiveConfig

    cfg = LiveConfig.from_env({"STATE_DIR": str(tmp_path)})
    code = {"APCA_PAPER": cfg.alpaca_paper, "TRADING_ENABLED": cfg.trading_enabled,
            "MAX_ORDER_NOTIONAL": cfg.max_order_notional, "MAX_POSITIONS": cfg.max_positions,
            "STALE_ORDER_MINUTES": cfg.stale_order_minutes, "TRADE_AFTER_OPEN_MINUTES": cfg.trade_after_open_minutes,
            "TRADE_BEFORE_CLOSE_MINUTES": cfg.trade_before_close_minutes, "MARKET_DATA": cfg.market_data,
            "LOG_LEVEL": cfg.log_level}
    checked = set()
    for names_cell, default_cell, _ in table("| variable | default | meaning |"):
        names = re.findall(r"`([A-Z_]+)`", names_cell)
        values = [v for v in default_cell.split(",") if v.strip()]
        if names == ["UNIVERSE"]:
            count = int(re.search(r"(\d+) symbols", default_cell).group(1))
            assert len(candidate_universe(cfg)) == count
            checked.add("UNIVERSE")
        for name, text in zip(names, values):
            if name in code:
                expected = code[name]
                shown = value(text)
                if isinstance(expected, bool):
                    shown = {"true": True, "false": False}[str(shown).lower()]
                elif isinstance(expected, (int, float)):
                    expected = float(expected)
                assert shown == expected, f"{name}: README {text.strip()}, code {code[name]!r}"
                checked.add(name)
    assert checked == set(code) | {"UNIVERSE"}


def _cron_times(expressions: tuple[str, ...]) -> list[str]:
    times = []
    for expression in expressions:
        minutes, hours = expression[len("cron("):].split()[:2]
        lo, _, hi = hours.partition("-")
        for hour in range(int(lo), int(hi or lo) + 1):
            times += [f"{hour:02d}:{int(m):02d}" for m in minutes.split(",")]
    return sorted(times)


def test_the_deploy_schedule_sentences_are_the_codes():
    from deploy.schedule import schedules_for
    from strategies.cadence import Cadence

    daily = schedules_for(Cadence())
    assert all("MON-FRI" in e for e in daily)
    # each daily expression is "cron(45,50 15 ...)": the decision's minute, then its same-day retry's
    firsts = sorted({f"{int(e[5:].split()[1]):02d}:{int(e[5:].split()[0].split(',')[0]):02d}" for e in daily},
                    reverse=True)
    daily_times = " and ".join(firsts)  # "15:45 and 12:45"
    retries = {m for e in daily for m in e[5:].split()[0].split(",")[1:]}
    assert len(retries) <= 1
    retry = f"each retried at :{retries.pop()}" if retries else None
    intraday = _cron_times(schedules_for(Cadence.parse("15min")))
    deploy_text = " ".join(section("## Deploy: `python -m deploy`").split())
    assert f"{daily_times} on weekdays for the default daily cadence" in deploy_text
    assert retry is None or retry in deploy_text, retry
    assert f"every slot from {intraday[0]} to {intraday[-1]} for `15min`" in deploy_text
    assert "every 15 minutes from 09:30 to 16:00" not in README
    cadence_text = " ".join(section("## One strategy, two homes").split())
    assert f"The deploy schedules {daily_times} on weekdays" in cadence_text
    assert retry is None or retry in cadence_text, retry
    assert f"decide at every slot from {intraday[0]} to {intraday[-1]}" in cadence_text


def test_the_order_id_format_is_the_codes():
    from live.orders import client_order_id

    templates = re.findall(r"`(<strategy>-[^`]+)`", README)
    assert len(templates) == 2

    def pattern(template: str) -> re.Pattern:
        parts = {"<strategy>": r"[a-z0-9-]+", "<YYYYMMDD>": r"\d{8}", "<slot>": r"\d{2,3}", "<SYMBOL>": r"[A-Z.]+",
                 "<side>": r"[bs]", "<check>": r"[0-9a-f]{6}"}
        pieces = re.split(r"(<[A-Za-z]+>)", template)
        return re.compile("".join(parts.get(p, re.escape(p)) for p in pieces))

    day = dt.date(2022, 6, 1)
    daily, intraday = client_order_id("prophet-trend", day, "KO", "buy"), client_order_id("prophet-trend", day, "KO",
                                                                                          "buy", slot=3)
    assert pattern(templates[0]).fullmatch(daily), (templates[0], daily)
    assert pattern(templates[1]).fullmatch(intraday), (templates[1], intraday)
    assert not pattern(templates[0]).fullmatch(intraday)
    example = re.search(r"e\.g\.\s+`(prophet-trend-[^`]+)`", README).group(1)
    assert example == daily


def test_every_notebook_is_listed():
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    listed = sorted(set(re.findall(r"notebooks/(\w+\.ipynb)", section("## Notebooks and walk-forward sweeps"))))
    assert listed == on_disk
    research = (ROOT / "docs" / "research.md").read_text()
    assert sorted(set(re.findall(r"`notebooks/(\w+\.ipynb)`", research))) == on_disk


def test_report_png_is_described_as_drawn():
    from backtests.report import focus_symbol

    bullet = next(line for line in README.split("\n- ") if line.startswith("`report.png`"))
    # with forecasts the panel is the forecast symbol with the largest absolute P&L, without them the most traded
    # symbol (backtests.report.focus_symbol): the README names both, as the code does
    assert "largest absolute P&L" in bullet and "largest absolute P&L" in focus_symbol.__doc__
    assert ("most traded" in bullet) == ("most traded" in focus_symbol.__doc__)


def test_the_sweeps_default_engine_in_the_docs_is_the_codes():
    from backtests.sweep import build_parser
    from strategies.params import StrategyParams

    default = build_parser().get_default("engine") or StrategyParams().engine
    research = (ROOT / "docs" / "research.md").read_text()
    row = next(line for line in research.splitlines() if line.startswith("| `--engine"))
    assert re.split(r"(?<!\\)\|", row)[2].strip() == default


def test_the_engine_figures_quoted_are_the_runs_note():
    from backtests.run import DEFAULT_RUN_RETURNS, ENGINE_AGREEMENT

    engines = (ROOT / "docs" / "engines.md").read_text()
    for text in (README, engines):
        flat = " ".join(text.split())
        assert f"agree on {ENGINE_AGREEMENT}" in flat
        assert DEFAULT_RUN_RETURNS["stan"] in flat and DEFAULT_RUN_RETURNS["exact"] in flat
    assert f"decision agreement (same price and holding): {ENGINE_AGREEMENT}" in README  # the benchmark's output
    assert re.search(rf"^Total return +{re.escape(DEFAULT_RUN_RETURNS['exact'])} ", README, re.M)  # the quickstart table


def test_a_stan_run_prints_the_engine_difference_in_one_line(tmp_path, capsys):
    from backtests.run import cli, engine_note
    from strategies.prophet_trend import ProphetTrend

    short = ["--symbols", "AAPL,KO", "--start", "2022-12-01", "--top-n", "2", "--history", "30", "--lookback", "5",
             "--refit-every", "10", "--no-plot"]
    assert cli(short + ["--engine", "stan", "--out", str(tmp_path / "stan")]) == 0
    printed = capsys.readouterr().out.splitlines()
    note = engine_note(ProphetTrend(ProphetTrend.Params(engine="stan")))
    assert [line for line in printed if "engine stan" in line] == [note]
    assert "docs/engines.md" in note and (ROOT / "docs" / "engines.md").is_file()
    assert cli(short + ["--out", str(tmp_path / "exact")]) == 0  # the default engine: no such line
    assert not [line for line in capsys.readouterr().out.splitlines() if "engine stan" in line]
