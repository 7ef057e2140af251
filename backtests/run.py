"""``python -m backtests.run``: backtest ProphetTrend on the bundled sample (or a CSV) and report it.

Example (a short window; the default run covers 2021-01-01 to 2022-12-28):

    python -m backtests.run --start 2022-10-01 --end 2022-12-28 --symbols AAPL,MSFT,KO --top-n 2 --quiet
"""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd

from backtests.backtest import BacktestConfig, BacktestResult, run_backtest
from backtests.outputs import check_out_dir, default_out_dir, staged_dir, write_json
from clitools import DefaultsHelpFormatter, OneLineErrorParser, guarded, progress
from marketdata import DataError, PriceData, load_csv, load_sample, load_sample_index
from strategies.params import StrategyParams

DEFAULTS = StrategyParams()
# Adjusted closes carry sub-cent digits; four keep a replay of trades.csv within 0.005 a share.
PRICE_DECIMALS = 4
OUTPUT_FILES = "summary.json, equity.csv, trades.csv, round_trips.csv, positions.csv"


def _fraction_or_none(text: str) -> float | None:
    if text.lower() in ("none", "off", "0", ""):
        return None
    return float(text)


def build_parser() -> OneLineErrorParser:
    p = OneLineErrorParser(
        prog="python -m backtests.run",
        description="Backtest the ProphetTrend strategy in Backtrader and compare it with a benchmark. "
        "Writes summary.json, equity.csv, trades.csv, round_trips.csv, positions.csv, report.png and report.html "
        "(the tearsheet) into --out.",
        formatter_class=DefaultsHelpFormatter,
    )
    g = p.add_argument_group("data and window")
    g.add_argument("--data", default="sample", help="'sample' (bundled, offline), 'yfinance', or a CSV file (long or wide)")
    g.add_argument("--symbols", default=None, help="comma-separated symbols to trade (default: every symbol in the data)")
    g.add_argument("--start", default="2021-01-01", help="first trading day; earlier rows warm the forecast up")
    g.add_argument("--end", default="2022-12-28", help="last day")
    g.add_argument("--cash", type=float, default=100_000.0, help="starting cash")
    g.add_argument("--commission", type=float, default=0.001, help="commission as a fraction of traded value")
    g.add_argument("--benchmark", choices=["auto", "index", "equal-weight"], default="auto",
                   help="auto: the S&P 500 index with the sample, else equal-weight buy-and-hold of the universe")
    s = p.add_argument_group("strategy")
    s.add_argument("--top-n", type=int, default=DEFAULTS.top_n, help="keep the top N symbols by momentum")
    s.add_argument("--lookback", type=int, default=DEFAULTS.lookback, help="momentum window in bars")
    s.add_argument("--history", type=int, default=DEFAULTS.history, help="closes Prophet is fitted on")
    s.add_argument("--horizon", type=int, default=DEFAULTS.horizon, help="forecast horizon in business days")
    s.add_argument("--band", type=float, default=DEFAULTS.band, help="no-signal band around the forecast (fraction)")
    s.add_argument("--mode", choices=["revert", "follow"], default=DEFAULTS.mode, help="revert: buy below forecast")
    s.add_argument("--refit-every", type=int, default=DEFAULTS.refit_every, help="refit Prophet every N business days")
    s.add_argument("--cash-fraction", type=float, default=DEFAULTS.cash_fraction, help="share of buying power used")
    s.add_argument("--max-weight", type=_fraction_or_none, default=None,
                   help="cap one new position at this fraction of equity (default: no cap, the seed's rule)")
    s.add_argument("--stop-loss", type=_fraction_or_none, default=None, help="close a position this far below entry, e.g. 0.02 (default: off)")
    s.add_argument("--take-profit", type=_fraction_or_none, default=None, help="close a position this far above entry, e.g. 0.4 (default: off)")
    s.add_argument("--engine", choices=["stan", "exact"], default=DEFAULTS.engine, help="forecast engine")
    s.add_argument("--changepoint-prior-scale", type=float, default=DEFAULTS.changepoint_prior_scale,
                   help="Prophet's changepoint prior scale")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, help="output folder (default: a new folder under runs/)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    o.add_argument("--no-plot", action="store_true", help="do not draw report.png and report.html")
    o.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    return p


def params_from_args(args) -> StrategyParams:
    names = {f.name for f in fields(StrategyParams)}
    return StrategyParams(**{k: v for k, v in vars(args).items() if k in names})


def load_data(spec: str, symbols: str | None, *, start: str | None = None, end: str | None = None,
              warmup_bars: int = 0) -> tuple[PriceData, pd.Series | None]:
    """The prices named by ``--data`` and the index series for the benchmark (only the sample has one).

    yfinance fetches only ``start`` - ``warmup_bars`` .. ``end`` (through its cache)."""
    index = None
    if spec == "sample":
        data, index = load_sample(), load_sample_index()
    elif spec == "yfinance":
        from marketdata.yahoo_cli_support import load_yfinance_for_backtest

        data = load_yfinance_for_backtest(symbols, start=start, end=end, warmup_bars=warmup_bars)
    else:
        data = load_csv(spec)
    if symbols:
        data = data.select(symbols.split(","))
    return data, index


def resolve_benchmark(choice: str, index: pd.Series | None) -> str:
    """``--benchmark``: ``auto`` is the index where the data has one (the sample), else equal-weight buy-and-hold.

    >>> resolve_benchmark("auto", None)
    'equal-weight'
    """
    benchmark = choice if choice != "auto" else ("index" if index is not None else "equal-weight")
    if benchmark == "index" and index is None:
        raise ValueError("--benchmark index needs the bundled sample; use equal-weight with other data")
    return benchmark


def format_summary(s: dict) -> str:
    """The summary as a two-column table, strategy vs benchmark."""
    b = s["benchmark"]
    rows = [
        ("Total return", f"{s['total_return']:+.2%}", f"{b['total_return']:+.2%}"),
        ("CAGR", f"{s['cagr']:+.2%}", f"{b['cagr']:+.2%}"),
        ("Sharpe (252, rf 0)", f"{s['sharpe']:.2f}", f"{b['sharpe']:.2f}"),
        ("Sortino", f"{s['sortino']:.2f}", ""),
        ("Max drawdown", f"{s['max_drawdown']:.2%}", f"{b['max_drawdown']:.2%}"),
        ("Volatility", f"{s['volatility']:.2%}", ""),
        ("Orders executed", f"{s['trades']}", ""),
        ("Round trips / win rate", f"{s['round_trips']} / {s['win_rate']:.0%}", ""),
        ("Exposure (bars invested)", f"{s['exposure']:.0%}", ""),
        ("Final equity", f"{s['final_equity']:,.0f}", ""),
    ]
    if "calmar" in s:  # the tearsheet's statistics, once write_outputs has added them
        rel = s["relative"]
        rows[6:6] = [
            ("Calmar", f"{s['calmar']:.2f}", ""),
            ("Longest drawdown", f"{s['longest_drawdown']['days']} days", ""),
            ("Worst day / month", f"{s['worst_day']['return']:+.2%} / {s['worst_month']['return']:+.2%}", ""),
            ("Alpha / beta", f"{rel['alpha']:+.2%} / {rel['beta']:.2f}", ""),
            ("Information ratio", f"{rel['information_ratio']:.2f}", ""),
        ]
    width = max(len(r[0]) for r in rows)
    bench_name = b["name"] if len(b["name"]) <= 22 else "equal-weight B&H"
    lines = [f"ProphetTrend backtest {s['start']} to {s['end']} ({s['bars']} bars, {len(s['symbols'])} symbols)",
             f"{'':{width}}  {'strategy':>14}  {bench_name:>16}"]
    lines += [f"{name:{width}}  {a:>14}  {bb:>16}" for name, a, bb in rows]
    if s.get("concentration", {}).get("warning"):
        lines.append(f"warning: {s['concentration']['warning']}")
    if s.get("rejected_orders"):
        lines.append(f"note: {s['rejected_orders']} order(s) rejected by the broker for lack of cash (see summary.json)")
    return "\n".join(lines)


def write_outputs(result: BacktestResult, out: Path, *, plot: bool, overwrite: bool) -> Path:
    """Write the run folder; adds the tearsheet's statistics (:func:`backtests.tearsheet.run_statistics`) to
    ``result.summary`` first, so summary.json and the printed table hold them."""
    from backtests import round_trips as rt
    from backtests.tearsheet import run_statistics

    result.summary.update(run_statistics(result))
    with staged_dir(out, overwrite) as stage:
        write_json(stage / "summary.json", result.summary)
        eq = result.equity[["equity", "benchmark", "cash"]].round(2)  # money in cents
        eq.to_csv(stage / "equity.csv", index_label="date", date_format="%Y-%m-%d")
        trades = result.trades.round({"price": PRICE_DECIMALS, "value": 2, "commission": 2})
        trades.to_csv(stage / "trades.csv", index=False, date_format="%Y-%m-%d")
        closes = result.closes.reindex(result.equity.index)
        trips = rt.round_trips(result.trades, closes)
        trips.round({"entry_price": PRICE_DECIMALS, "exit_price": PRICE_DECIMALS, "pnl": 2, "return": 6}).to_csv(
            stage / "round_trips.csv", index=False, date_format="%Y-%m-%d")
        book = rt.replay(result.trades, closes, result.equity, float(result.summary["config"]["cash"]))
        book.weights.round(6).to_csv(stage / "positions.csv", index_label="date", date_format="%Y-%m-%d")
        if plot:
            from backtests.report import write_report
            from backtests.tearsheet import write_tearsheet

            write_report(result, stage / "report.png")
            write_tearsheet(result, stage / "report.html")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = params_from_args(args)
    config_kwargs = dict(start=args.start, end=args.end, cash=args.cash, commission=args.commission)
    data, index = load_data(args.data, args.symbols, start=args.start, end=args.end, warmup_bars=params.warmup_bars)
    config = BacktestConfig(benchmark=resolve_benchmark(args.benchmark, index), **config_kwargs)
    out = args.out or default_out_dir()
    check_out_dir(out, args.overwrite)  # fail before the long run, not after it
    t0 = time.perf_counter()
    bars = int(((data.closes.index >= config.start_ts) & (data.closes.index <= config.end_ts)).sum())
    with progress(bars, "backtest", enabled=None if not args.quiet else False) as bar:
        started = {"seen": 0}

        def tick() -> None:
            started["seen"] += 1
            if started["seen"] > params.warmup_bars:
                bar.update(1)

        result = run_backtest(data, params, config, index=index, on_bar=tick)
    result.summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_outputs(result, out, plot=not args.no_plot, overwrite=args.overwrite)
    if not args.quiet:
        print(format_summary(result.summary))
        if result.summary.get("data", {}).get("survivorship_note"):
            print(f"note: {result.summary['data']['survivorship_note']}")
        print(f"wrote {out}/ ({OUTPUT_FILES}{'' if args.no_plot else ', report.png, report.html'}) "
              f"in {result.summary['wall_seconds']:.0f}s")
    return 0


cli = guarded(main, DataError)

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
