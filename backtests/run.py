"""``python -m backtests.run``: backtest a strategy on the bundled sample (or a CSV, or yfinance) and report it.

Example (a short window; the default run covers 2021-01-01 to 2022-12-28):

    python -m backtests.run --start 2022-10-01 --end 2022-12-28 --symbols AAPL,MSFT,KO --top-n 2 --quiet
    python -m backtests.run --config runs/<run>/config.toml --out runs/again   # the same run again
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
import time
from pathlib import Path

import pandas as pd

from backtests.backtest import BacktestConfig, BacktestResult, run_backtest
from backtests.outputs import check_out_dir, default_out_dir, staged_dir, write_json
from backtests.strategy_args import add_strategy_arguments, config_from_args
from clitools import DefaultsHelpFormatter, OneLineErrorParser, guarded, progress
from marketdata import DataError, PriceData, load_sample_index, open_provider
from strategies.base import StrategyError
from strategies.config import StrategyConfig
from strategies.execution import DEFAULT_SLIPPAGE_BPS, FILLS, REGULATORY
from strategies.prophet_trend import ProphetTrend
# Adjusted closes carry sub-cent digits; four keep a replay of trades.csv within 0.005 a share.
PRICE_DECIMALS = 4
OUTPUT_FILES = "summary.json, equity.csv, trades.csv, round_trips.csv, positions.csv, config.toml"


RUN_DEFAULTS = {"data": "sample", "start": "2021-01-01", "end": "2022-12-28", "cash": 100_000.0,
                "commission": 0.0, "benchmark": "auto", "fill": "decision", "costs": "alpaca",
                "slippage_bps": DEFAULT_SLIPPAGE_BPS}
RUN_OPTIONAL = ("symbols", "date_format")  # written into config.toml only when given

# Measured by `python -m benchmarks.bench_engines` (20 stocks, 2022, refit every bar; docs/engines.md) and by the
# default run under each engine; the README and docs/engines.md quote the same figures (tests/test_readme.py).
ENGINE_AGREEMENT = "98.55%"
DEFAULT_RUN_RETURNS = {"exact": "+6.70%", "stan": "+8.43%"}


def engine_note(strategy) -> str | None:
    """The one line a ``--engine stan`` run prints: how often the engines agree, and why whole runs differ.

    >>> from strategies.prophet_trend import ProphetTrend
    >>> engine_note(ProphetTrend(ProphetTrend.Params(engine="exact"))) is None
    True
    """
    if getattr(getattr(strategy, "params", None), "engine", None) != "stan":
        return None
    return (f"note: engine stan (stock Prophet) and the default exact engine agree on {ENGINE_AGREEMENT} of "
            f"decisions on identical inputs; the others sit at the band's edge, where Stan's optimiser stops short "
            f"of the optimum, and one different trade changes every later holding, so whole runs differ (the "
            f"default run: stan {DEFAULT_RUN_RETURNS['stan']}, exact {DEFAULT_RUN_RETURNS['exact']}); see "
            f"docs/engines.md")


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog="python -m backtests.run",
        description="Backtest a strategy (ProphetTrend by default) in Backtrader under the same rules as the live "
        "cycle, and compare it with a benchmark. Writes summary.json, equity.csv, trades.csv, round_trips.csv, "
        "positions.csv, config.toml, report.png and report.html (the tearsheet) into --out; `--config "
        "OUT/config.toml` runs it again.",
        epilog="Example: python -m backtests.run --strategy ma-crossover --param fast=10 --symbols AAPL,KO,PG "
        "--start 2022-01-03 --quiet. Exit codes: 0 done, 2 bad input (one error line).",
        formatter_class=DefaultsHelpFormatter,
    )
    g = p.add_argument_group("data and window")
    g.add_argument("--data", default=None, help="'sample' (bundled, offline; the default), 'yfinance', 'alpaca' "
                   "(APCA_API_KEY_ID/APCA_API_SECRET_KEY), or a CSV file (long or wide; intraday when its timestamps "
                   "have a time of day); yfinance and alpaca fetch bars of the strategy's --bar")
    g.add_argument("--date-format", default=None, metavar="FORMAT",
                   help="how a CSV file's dates are written when they are not ISO 8601 (YYYY-MM-DD), in strftime "
                        "codes, e.g. %%d/%%m/%%Y; other layouts are refused, never guessed")
    g.add_argument("--symbols", default=None, help="comma-separated symbols to trade (default: the config's universe, "
                   "else every symbol in the data)")
    g.add_argument("--start", default=None, help=f"first trading day; earlier rows warm the strategy up ({RUN_DEFAULTS['start']})")
    g.add_argument("--end", default=None, help=f"last day ({RUN_DEFAULTS['end']})")
    g.add_argument("--cash", type=float, default=None, help=f"starting cash ({RUN_DEFAULTS['cash']:g})")
    x = p.add_argument_group("execution model (docs/execution.md; the paper broker and live sizing use the same)")
    x.add_argument("--fill", choices=FILLS, default=None,
                   help="decision (default): orders fill at the decision moment, as the bot's do (daily bars: the "
                   "decision bar's close; intraday: the open of the bar at the slot); next-bar: daily bars fill at "
                   "the next bar's open, a conservative research option")
    x.add_argument("--costs", choices=REGULATORY, default=None,
                   help="alpaca (default): Alpaca's costs, no commission and the SEC fee and FINRA TAF on sells at "
                   "their dated rates; none: no regulatory fees")
    x.add_argument("--commission", type=float, default=None,
                   help=f"commission as a fraction of traded value, on top of --costs ({RUN_DEFAULTS['commission']:g}; "
                   "Alpaca charges none)")
    x.add_argument("--slippage-bps", type=float, default=None,
                   help=f"buys fill this many basis points above the price, sells below ({DEFAULT_SLIPPAGE_BPS:g})")
    g.add_argument("--benchmark", choices=["auto", "index", "equal-weight"], default=None,
                   help="auto (default): the S&P 500 index with the sample, else equal-weight buy-and-hold of the universe")
    add_strategy_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="output folder (default: a new folder under runs/)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    o.add_argument("--no-plot", action="store_true", help="do not draw report.png and report.html")
    o.add_argument("--quiet", action="store_true", help="no progress and no summary table: only the line naming the run folder")
    o.add_argument("--workers", type=int, default=1,
                   help="processes fitting the exact engine (results are identical for any number; 2 pays off on "
                        "large intraday runs)")
    return p


def run_settings(args, config: StrategyConfig) -> dict:
    """The run's data and window: flags, else the config's ``[backtest]`` table, else the defaults."""
    if args.symbols is not None and not [s for s in args.symbols.split(",") if s.strip()]:
        # an empty list is a mistake, never "every symbol in the data"
        raise ValueError(f"--symbols {args.symbols!r} names no symbol: give at least one, or leave the flag out "
                         f"for the config's universe or every symbol in the data")
    settings = dict(RUN_DEFAULTS)
    settings.update({k: v for k, v in config.backtest.items() if k in (*RUN_DEFAULTS, *RUN_OPTIONAL)})
    settings.update({k: getattr(args, k) for k in (*RUN_DEFAULTS, *RUN_OPTIONAL) if getattr(args, k, None) is not None})
    if settings.get("symbols") is None and isinstance(config.universe, tuple):
        settings["symbols"] = ",".join(config.universe)
    if isinstance(settings.get("symbols"), (list, tuple)):
        settings["symbols"] = ",".join(settings["symbols"])
    data = str(settings["data"])
    if data not in ("sample", "yfinance", "alpaca") and not data.startswith("csv:"):
        settings["data"] = str(Path(data).resolve())  # a config written by this run must find the file again
    return settings


def execution_settings(settings: dict) -> dict:
    """The execution model's ``BacktestConfig`` fields from the run's settings (written to config.toml's
    ``[backtest]``, which the paper broker and the live sizing read too).

    >>> execution_settings(dict(RUN_DEFAULTS))
    {'fill': 'decision', 'costs': 'alpaca', 'commission': 0.0, 'slippage_bps': 2.0}
    """
    return {"fill": str(settings["fill"]), "costs": str(settings["costs"]),
            "commission": float(settings["commission"]), "slippage_bps": float(settings["slippage_bps"])}


def load_data(spec: str, symbols: str | None, *, start: str | None = None, end: str | None = None,
              warmup_bars: int = 0, interval: str = "1d", quiet: bool = False,
              date_format: str | None = None) -> tuple[PriceData, pd.Series | None]:
    """The prices named by ``--data`` and the index series for the benchmark (only the sample has one).

    yfinance and alpaca fetch only ``start`` - ``warmup_bars`` .. ``end`` (through their caches), in bars of
    ``interval`` (the strategy's ``bar``); a CSV file's bar size is what its timestamps say."""
    if symbols is not None and not [s for s in symbols.split(",") if s.strip()]:
        raise ValueError(f"--symbols {symbols!r} names no symbol: give at least one, or leave the flag out")
    if date_format and spec in ("sample", "yfinance", "alpaca"):
        raise ValueError(f"--date-format reads a CSV file's dates; --data {spec} has dates of its own")
    index = load_sample_index() if spec == "sample" else None
    if spec == "yfinance" and interval == "1d":
        from marketdata.yahoo_cli_support import load_yfinance_for_backtest

        data = load_yfinance_for_backtest(symbols, start=start, end=end, warmup_bars=warmup_bars,
                                          **({"progress": False} if quiet else {}))
    elif spec in ("yfinance", "alpaca"):
        data = _load_from_source(spec, symbols, start=start, end=end, warmup_bars=warmup_bars, interval=interval,
                                 quiet=quiet)
    else:  # the sample or a CSV file, opened as the live cycle opens MARKET_DATA
        data = open_provider(spec, date_format=date_format).data
    if symbols:
        data = data.select(symbols.split(","))
    return data, index


def _load_from_source(spec: str, symbols: str | None, *, start: str | None, end: str | None, warmup_bars: int,
                      interval: str, quiet: bool = False) -> PriceData:
    """Bars of ``interval`` from Alpaca (any size) or yfinance (intraday, within Yahoo's limits), with enough
    sessions before ``start`` to warm the strategy up."""
    import datetime as dt
    import math

    from marketdata.bars import parse_interval

    wanted = [s.strip().upper() for s in (symbols or "").split(",") if s.strip()]
    if not wanted:
        raise DataError(f"--data {spec} needs --symbols (or a universe of symbols in the config) for {interval} bars")
    try:
        first, last = dt.date.fromisoformat(str(start)), dt.date.fromisoformat(str(end))
    except ValueError:
        raise DataError(f"--start and --end must be dates (YYYY-MM-DD), got {start!r} and {end!r}") from None
    spec_i = parse_interval(interval)
    per_session = 1 if not spec_i.intraday else max(1, 390 // spec_i.minutes)
    sessions = math.ceil(warmup_bars / per_session) + 1
    lo = first - dt.timedelta(days=math.ceil(sessions * 365 / 252) + (14 if not spec_i.intraday else 4))
    provider = open_provider(spec)
    with progress(len(wanted), spec, enabled=False if quiet else None) as bar:
        bar.unit = "symbol"
        data = provider.load(wanted, lo, last, strict=True, interval=spec_i.name, progress=bar.update)
    incomplete = data.provenance.get("symbols_incomplete") or {}
    if incomplete:
        # Served from the cache without the part that could not be fetched: the run would quietly end early.
        why = next(iter(incomplete.values())).split(": ", 1)[-1]
        raise DataError(f"{spec} {spec_i.name} {lo}..{last}: part of the window could not be fetched for "
                        f"{', '.join(sorted(incomplete))} ({why}); their cached bars are kept (to "
                        f"{data.closes.index[-1].date()}): retry later, or end the run by then")
    return data


def resolve_benchmark(choice: str, index: pd.Series | None) -> str:
    """``--benchmark``: ``auto`` is the index where the data has one (the sample), else equal-weight buy-and-hold.

    >>> resolve_benchmark("auto", None)
    'equal-weight'
    """
    benchmark = choice if choice != "auto" else ("index" if index is not None else "equal-weight")
    if benchmark == "index" and index is None:
        raise ValueError("--benchmark index needs the bundled sample; use equal-weight with other data")
    return benchmark


def _costs_cell(costs: dict | None) -> str:
    """Costs paid and their share of the net profit (shown only for a profitable run)."""
    if not costs:
        return ""
    share = costs.get("share_of_profit")
    return f"{costs['total']:,.0f}" + ("" if share is None else f" ({share:.1%})")


def format_summary(s: dict) -> str:
    """The summary as a two-column table, strategy vs benchmark."""
    b = s["benchmark"]
    intraday = s.get("interval", "1d") != "1d"
    rows = [
        ("Total return", f"{s['total_return']:+.2%}", f"{b['total_return']:+.2%}"),
        ("CAGR", f"{s['cagr']:+.2%}", f"{b['cagr']:+.2%}"),
        ("Sharpe (252 sessions, rf 0)" if intraday else "Sharpe (252, rf 0)", f"{s['sharpe']:.2f}", f"{b['sharpe']:.2f}"),
        ("Sortino", f"{s['sortino']:.2f}", ""),
        ("Max drawdown", f"{s['max_drawdown']:.2%}", f"{b['max_drawdown']:.2%}"),
        ("Volatility", f"{s['volatility']:.2%}", ""),
        ("Orders executed", f"{s['trades']}", ""),
        ("Round trips / win rate; trims", f"{s['round_trips']} / {s['win_rate']:.0%}; {s.get('trims', 0)}", ""),
        ("Exposure (mean invested share)", f"{s['exposure']:.1%}", ""),
        ("Slots with a position" if intraday else "Bars with a position", f"{s.get('bars_with_position', 0):.1%}", ""),
        ("Costs paid (share of profit)", _costs_cell(s.get("costs")), ""),
        ("Turnover (one-way, per year)", f"{s.get('turnover', {}).get('annual', 0.0):.1f}x", ""),
        ("Final equity", f"{s['final_equity']:,.0f}", ""),
    ]
    if "calmar" in s:  # the tearsheet's statistics, once write_outputs has added them
        rel = s["relative"]
        rows[6:6] = [
            ("Calmar", f"{s['calmar']:.2f}", ""),
            ("Longest drawdown", f"{s['longest_drawdown']['days']} days", ""),
            ("Worst session / month" if intraday else "Worst day / month",
             f"{s['worst_day']['return']:+.2%} / {s['worst_month']['return']:+.2%}", ""),
            ("Alpha / beta", f"{rel['alpha']:+.2%} / {rel['beta']:.2f}", ""),
            ("Information ratio", f"{rel['information_ratio']:.2f}", ""),
        ]
    width = max(len(r[0]) for r in rows)
    bench_name = b["name"] if len(b["name"]) <= 22 else "equal-weight B&H"
    title = s.get("strategy", {}).get("name", "ProphetTrend")
    n = s.get("sessions", 0)
    shape = (f"{s['bars']} slots in {n} session{'s' if n != 1 else ''}, {s['interval']} bars, every "
             f"{s['cadence']['cadence']}"
             if intraday and "sessions" in s else f"{s['bars']} bars")
    lines = [f"{title} backtest {s['start']} to {s['end']} ({shape}, {len(s['symbols'])} symbols)",
             f"{'':{width}}  {'strategy':>14}  {bench_name:>16}"]
    lines += [f"{name:{width}}  {a:>14}  {bb:>16}" for name, a, bb in rows]
    x = s.get("execution")
    if x:
        costs = ("Alpaca's costs (SEC fee and FINRA TAF on sells)" if x["costs"] == "alpaca" else "no regulatory fees")
        extra = f", commission {x['commission']:g}" if x["commission"] else ""
        label = " (--fill next-bar)" if x["fill"] == "next-bar" else ""
        lines.append(f"execution: fills at {x['fills_at']}{label}; {costs}{extra}, {x['slippage_bps']:g} bps slippage")
    if s.get("concentration", {}).get("warning"):
        lines.append(f"warning: {s['concentration']['warning']}")
    if s.get("rejected_orders"):
        lines.append(f"note: {s['rejected_orders']} order(s) rejected by the broker for lack of cash (see summary.json)")
    if s.get("skipped_orders"):
        lines.append(f"note: {s['skipped_orders']} order(s) skipped or reduced by the rules (max_positions, "
                     f"max_order_notional, buying power; see skipped.csv)")
    return "\n".join(line.rstrip() for line in lines)  # no trailing blanks where a row has no benchmark


def write_outputs(result: BacktestResult, out: Path, *, plot: bool, overwrite: bool,
                  config_toml: str | None = None, pinned: dict[str, bytes] | None = None) -> Path:
    """Write the run folder; adds the tearsheet's statistics (:func:`backtests.tearsheet.run_statistics`) to
    ``result.summary`` first, so summary.json and the printed table hold them. ``pinned``: files the config
    names (a user's strategy file, :meth:`StrategyConfig.pinned`), written beside it."""
    from backtests import round_trips as rt
    from backtests.tearsheet import run_statistics

    result.summary.update(run_statistics(result))
    interval = result.summary.get("interval")
    # Intraday rows are slots (equity) and fill or decision times (trades): keep the time of day.
    stamp = "%Y-%m-%d" if interval in (None, "1d") else "%Y-%m-%d %H:%M"
    with staged_dir(out, overwrite) as stage:
        write_json(stage / "summary.json", result.summary)
        if config_toml is not None:
            (stage / "config.toml").write_text(config_toml, encoding="utf-8")
        for name, content in (pinned or {}).items():
            (stage / name).write_bytes(content)
        if result.skipped is not None and len(result.skipped):
            result.skipped.to_csv(stage / "skipped.csv", index=False, date_format=stamp)
        eq = result.equity[["equity", "benchmark", "cash"]].round(2)  # money in cents
        eq.to_csv(stage / "equity.csv", index_label="date", date_format=stamp)
        trades = result.trades.round({"price": PRICE_DECIMALS, "value": 2, "commission": 2})
        trades.to_csv(stage / "trades.csv", index=False, date_format=stamp)
        moved, closes = rt.on_equity_clock(result.trades, result.closes, result.equity.index, interval)
        trips = rt.round_trips(result.trades, closes)
        trips["pnl"] = rt.cents_summing_to_total(trips["pnl"])  # the column adds up to the equity change
        trips.round({"entry_price": PRICE_DECIMALS, "exit_price": PRICE_DECIMALS, "pnl": 2, "return": 6}).to_csv(
            stage / "round_trips.csv", index=False, date_format=stamp)
        book = rt.replay(moved, closes, result.equity, float(result.summary["config"]["cash"]))
        book.weights.round(6).to_csv(stage / "positions.csv", index_label="date", date_format=stamp)
        if plot:
            from backtests.report import write_report
            from backtests.tearsheet import write_tearsheet

            write_report(result, stage / "report.png")
            write_tearsheet(result, stage / "report.html")
    return out


@contextmanager
def _fitting_processes(strategy, workers: int):
    """ProphetTrend's exact fits on ``workers`` processes (``strategies.engines.pool``: the same numbers)."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers == 1 or not isinstance(strategy, ProphetTrend) or strategy.params.engine != "exact":
        yield
        return
    from strategies.engines.pool import ExactPool
    from strategies.forecaster import Forecaster, settings_for

    with ExactPool(settings_for(strategy.params), workers=workers) as pool:
        strategy.forecaster = Forecaster(strategy.params, engine=pool)
        yield


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    settings = run_settings(args, config)
    strategy = config.build()
    out = args.out or default_out_dir()
    check_out_dir(out, args.overwrite)  # fail before the data download and the long run, not after them
    BacktestConfig(start=settings["start"], end=settings["end"], cash=float(settings["cash"]), rules=config.rules,
                   **execution_settings(settings))  # cash, dates, the execution model: checked now too
    data, index = load_data(settings["data"], settings.get("symbols"), start=settings["start"], end=settings["end"],
                            warmup_bars=strategy.warmup_bars, interval=str(getattr(strategy, "bar", None) or "1d"),
                            quiet=args.quiet, date_format=settings.get("date_format"))
    run_config = BacktestConfig(start=settings["start"], end=settings["end"], cash=float(settings["cash"]),
                                benchmark=resolve_benchmark(settings["benchmark"], index), rules=config.rules,
                                **execution_settings(settings))
    ran = config.with_(universe=tuple(data.symbols),
                       backtest={k: settings[k] for k in RUN_DEFAULTS} | {"symbols": list(data.symbols)}
                       | ({"date_format": settings["date_format"]} if settings.get("date_format") else {}))
    t0 = time.perf_counter()
    bars = int(((data.closes.index >= run_config.start_ts) & (data.closes.index <= run_config.end_ts)).sum())
    with progress(bars, "backtest", enabled=None if not args.quiet else False) as bar:
        started = {"seen": 0}

        def tick() -> None:
            started["seen"] += 1
            if started["seen"] > strategy.warmup_bars:
                bar.update(1)

        with _fitting_processes(strategy, args.workers):
            result = run_backtest(data, strategy, run_config, index=index, on_bar=tick, cadence=config.cadence)
    result.summary["cadence"] = config.cadence.to_dict()
    result.summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    config_toml, pinned = ran.pinned()
    write_outputs(result, out, plot=not args.no_plot, overwrite=args.overwrite, config_toml=config_toml,
                  pinned=pinned)
    if not args.quiet:
        print(format_summary(result.summary))
        if engine_note(strategy):
            print(engine_note(strategy))
        if result.summary.get("data", {}).get("survivorship_note"):
            print(f"note: {result.summary['data']['survivorship_note']}")
    # --quiet too: the run folder is the one thing a script needs from the run
    copy = ", strategy.py (the strategy file that ran, pinned by its sha256)" if pinned else ""
    print(f"wrote {out}/ ({OUTPUT_FILES}{copy}{'' if args.no_plot else ', report.png, report.html'}) "
          f"in {result.summary['wall_seconds']:.0f}s")
    return 0


cli = guarded(main, DataError, StrategyError)

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
