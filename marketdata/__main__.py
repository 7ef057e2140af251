"""``python -m marketdata fetch | info | clear | universe``: warm, inspect and clear the Yahoo price cache.

Examples:

    python -m marketdata fetch --symbols AAPL,MSFT --start 2020-01-01     # only missing ranges are downloaded
    python -m marketdata fetch                                            # the whole S&P 500 snapshot, 5 years
    python -m marketdata fetch --interval 15m --symbols AAPL --start 2024-06-03   # Yahoo: 15m for 60 days back
    python -m marketdata info
    python -m marketdata clear --symbols AAPL
    python -m marketdata universe --refresh                               # re-read Wikipedia's constituents table

The cache folder is ``--cache-dir``, else ``$PROPHETTREND_CACHE``, else the user cache folder.
Exit codes: 0 done; 1 some or all symbols could not be fetched or saved (Yahoo, the network, the cache's disk; what
worked and what did not is named on stderr); 2 bad input (flags, symbols unknown to Yahoo, a damaged cache file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from pathlib import Path

from clitools import OneLineErrorParser, UserError, guarded, progress
from marketdata.cache import ENV_VAR, CacheCorruptError, PriceCache, default_cache_dir
from marketdata.errors import DataError
from marketdata.universe import WIKIPEDIA_URL, load_sp500, refresh_sp500, refreshed_path
from marketdata.yahoo import OFFLINE_ENV_VAR, FetchReport, YahooProvider


EXIT_FETCH_FAILED = 1  # some or all of the fetch failed (Yahoo, network, the cache's disk); 2 is bad input


def build_parser() -> OneLineErrorParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", type=Path, default=None,
                        help=f"cache folder (default: ${ENV_VAR}, else {default_cache_dir()})")
    common.add_argument("--raw", action="store_true",
                        help="unadjusted prices (auto_adjust=False) instead of split- and dividend-adjusted ones")
    p = OneLineErrorParser(
        prog="python -m marketdata",
        description="Warm, inspect and clear the on-disk cache of Yahoo Finance daily bars.",
        epilog=f"Environment: {ENV_VAR} (cache folder), {OFFLINE_ENV_VAR}=1 (serve the cache only). "
               "Exit codes: 0 done, 1 some symbols not fetched or not saved (named on stderr), 2 bad input. "
               "See docs/marketdata.md.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    f = sub.add_parser("fetch", parents=[common], help="download the missing date ranges into the cache",
                       description="Download the date ranges missing from the cache, in batches, with retries.")
    f.add_argument("--symbols", default=None, help="comma-separated symbols (default: the S&P 500 snapshot)")
    f.add_argument("--start", default=None, help="first date, YYYY-MM-DD (default: five years before --end)")
    f.add_argument("--end", default=None, help="last date, YYYY-MM-DD (default: today)")
    f.add_argument("--batch-size", type=int, default=50, help="symbols per yf.download call")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.add_argument("--source", choices=("yfinance", "alpaca"), default="yfinance",
                   help="where to fetch from (alpaca: APCA_API_KEY_ID / APCA_API_SECRET_KEY, APCA_DATA_FEED)")
    f.add_argument("--interval", default="1d", help="bar size: 1m, 5m, 15m, 1h (60m) or 1d")
    f.add_argument("--extended", action="store_true", help="intraday: keep pre- and post-market bars (04:00-20:00)")
    i = sub.add_parser("info", parents=[common], help="what the cache holds",
                       description="Summarise the cache: symbols, dates, size, fetch times, unreadable files.")
    i.add_argument("--symbols", default=None, help="show these symbols one per line ('all' for every symbol)")
    c = sub.add_parser("clear", parents=[common], help="delete cached files",
                       description="Delete the cached files of some symbols, or all of them.")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--symbols", default=None, help="comma-separated symbols to delete")
    g.add_argument("--all", action="store_true",
                   help="delete every cached file of this kind (adjusted or --raw, --interval)")
    for sp in (i, c):
        sp.add_argument("--interval", default="1d", help="which Yahoo cache: 1m, 5m, 15m, 1h or 1d (default)")
        sp.add_argument("--extended", action="store_true", help="intraday: the extended-hours cache")
    u = sub.add_parser("universe", parents=[common], help="show or refresh the S&P 500 snapshot",
                       description="Show the S&P 500 snapshot in use; --refresh downloads the current table.")
    u.add_argument("--refresh", action="store_true", help="download the constituents table from --url")
    u.add_argument("--url", default=WIKIPEDIA_URL, help="page holding the constituents table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_cache_dir(args.cache_dir if args.cache_dir is not None else default_cache_dir())
    return {"fetch": _fetch, "info": _info, "clear": _clear, "universe": _universe}[args.command](args)


def _check_cache_dir(root: Path) -> None:
    """A cache folder that is (or lies under) a file is a configuration error, not a failed fetch."""
    existing = Path(root).expanduser()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"cache folder {root} cannot be used: {existing} is a file, not a folder "
                        f"(--cache-dir or ${ENV_VAR})")


def _symbols(text: str | None, cache_dir) -> tuple[list[str], str]:
    if text is not None:  # an explicitly empty list is an error, not "every symbol"
        symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
        if not symbols:
            raise UserError("--symbols lists no symbols")
        return symbols, f"{len(symbols)} symbol(s)"
    universe = load_sp500(cache_dir=cache_dir)
    return universe.symbols, f"the S&P 500 snapshot of {universe.snapshot_date} ({len(universe.symbols)} symbols)"


FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2199, 12, 31)  # pandas' Timestamp spans 1677 to 2262


def _date(text: str | None, what: str, default: dt.date) -> dt.date:
    if text is None:
        return default
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"--{what} {text!r} is not a date (YYYY-MM-DD)") from None
    if not FIRST_DATE <= day <= LAST_DATE:  # year 1 or 9999 would overflow the date arithmetic further on
        raise UserError(f"--{what} {day} is outside {FIRST_DATE} to {LAST_DATE}")
    return day


def _fetch(args) -> int:
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    end = _date(args.end, "end", dt.date.today())
    start = _date(args.start, "start", end - dt.timedelta(days=5 * 365))
    if start > end:
        raise UserError(f"empty date range: --start {start} is after --end {end}")
    symbols, what = _symbols(args.symbols, args.cache_dir)
    if getattr(args, "source", "yfinance") == "alpaca":
        return _fetch_alpaca(args, symbols, what, start, end)
    from marketdata.bars import parse_interval

    interval = parse_interval(getattr(args, "interval", "1d")).name
    extended = bool(getattr(args, "extended", False)) and interval != "1d"
    provider = YahooProvider(cache_dir=args.cache_dir, adjusted=not args.raw, batch_size=args.batch_size)
    if provider.offline:
        raise UserError(f"{OFFLINE_ENV_VAR} is set: fetch needs the network")
    if interval != "1d" and args.start is None:
        start = max(start, provider.earliest(interval))  # the default five years: as far back as Yahoo serves
    with progress(len(symbols), "fetch", enabled=False if args.quiet else None) as bar:
        bar.unit = "symbol"
        report = provider.fetch(symbols, start, end, progress=bar.update, interval=interval, extended=extended)
    bars = "" if interval == "1d" else f", {interval} bars{' (extended hours)' if extended else ''}"
    print(f"{what}{bars}, {start} to {end}: {len(report.windows)} loaded, {len(report.downloaded)} updated from "
          f"Yahoo in {report.downloads} download(s); cache {provider.cache_for(interval, extended).folder}")
    return _outcome(report)


# Failures the user fixes (the symbols, a damaged file): bad input, exit 2 when they are all that happened.
_USER_FIXES = ("unknown", "no_bars", "corrupt")


def _outcome(report: FetchReport) -> int:
    """The exit code of a fetch, with one stderr line per kind of problem: what worked and what did not."""
    problems = []
    if report.cache_write_errors:
        reason = next(iter(sorted(report.cache_write_errors.items())))[1]
        problems.append(f"{len(report.cache_write_errors)} symbol(s) downloaded but not saved, the cache could not "
                        f"be written ({reason}): {_names(report.cache_write_errors)}")
    if report.incomplete:
        problems.append(f"{len(report.incomplete)} symbol(s) kept without their missing range (Yahoo unreachable): "
                        f"{_names(report.incomplete)}")
    if report.failed:
        problems.append(report.failure_summary())
    if not problems:
        return 0
    saved = [s for s in report.windows if s not in report.cache_write_errors and s not in report.incomplete]
    if not saved:
        if not report.cache_write_errors and not report.incomplete and \
                all(reason in _USER_FIXES for reason in report.failed.values()):
            raise DataError(report.failure_summary())
        print(f"error: fetch failed, nothing saved: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FETCH_FAILED
    print(f"saved: {len(saved)} symbol(s) complete in the cache: {_names(saved)}", file=sys.stderr)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return EXIT_FETCH_FAILED


def _names(symbols) -> str:
    names = sorted(symbols)
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _fetch_alpaca(args, symbols: list[str], what: str, start: dt.date, end: dt.date) -> int:
    from marketdata.alpaca_data import AlpacaDataConfig, AlpacaDataProvider
    from marketdata.bars import parse_interval

    interval = parse_interval(args.interval).name
    provider = AlpacaDataProvider(AlpacaDataConfig.from_env(), cache_dir=args.cache_dir, batch_size=args.batch_size)
    if provider.offline:
        raise UserError(f"{OFFLINE_ENV_VAR} is set: fetch needs the network")
    with progress(len(symbols), "fetch", enabled=False if args.quiet else None) as bar:
        bar.unit = "symbol"
        report = provider.fetch(symbols, start, end, interval=interval, extended=args.extended, progress=bar.update)
    cache = provider.cache(interval, args.extended)
    print(f"{what}, {interval} bars, {start} to {end}: {len(report.frames)} loaded, {len(report.downloaded)} updated "
          f"from Alpaca ({provider.config.feed}) in {report.requests} request(s), {report.retries} retried; "
          f"cache {cache.folder}")
    if report.incomplete:
        print(f"warning: {len(report.incomplete)} symbol(s) kept without their missing range: "
              f"{', '.join(sorted(report.incomplete)[:20])}", file=sys.stderr)
    if report.failed:
        if not report.frames:
            raise DataError(report.failure_summary())
        print(f"warning: {report.failure_summary()}", file=sys.stderr)
        return 1
    return 0


def _info(args) -> int:
    if args.symbols is not None and not args.symbols.replace(",", "").strip():
        raise UserError("--symbols lists no symbols (use 'all' for every cached symbol)")
    cache = _yahoo_cache(args)
    symbols = cache.symbols()
    rows = [cache.describe(s) for s in symbols]
    size = sum(r["bytes"] for r in rows)
    bars = "daily bars" if cache.interval == "1d" else f"{cache.interval} bars, New York bar starts"
    print(f"cache: {cache.folder} ({'adjusted' if cache.adjusted else 'raw'} {bars})")
    covered = [r["covered"] for r in rows if r.get("covered")]
    fetched = [r["fetched_at"] for r in rows if r.get("fetched_at")]
    shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"
    print(f"symbols: {len(symbols)}, bars: {sum(r.get('rows', 0) for r in rows):,}, size: {shown}")
    if covered:
        print(f"dates covered: {min(c[0] for c in covered)} to {max(c[1] for c in covered)}; "
              f"last fetched {max(fetched) if fetched else 'never'}")
    bad = [r for r in rows if "error" in r]
    if bad:
        print(f"unreadable files ({len(bad)}, left in place): " + ", ".join(r["path"] for r in bad[:10]))
    strays = cache.stray_temporaries()
    if strays:
        print(f"temporary files from an interrupted write: {len(strays)} (harmless; `clear --all` removes them)")
    universe = load_sp500(cache_dir=args.cache_dir)
    refreshed = refreshed_path(args.cache_dir).is_file()
    print(f"universe: S&P 500 snapshot of {universe.snapshot_date}, {len(universe.symbols)} symbols "
          f"({'refreshed copy ' + universe.path if refreshed else 'bundled with the package'})")
    if args.symbols is not None:
        wanted = symbols if args.symbols.strip().lower() == "all" else [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        for symbol in wanted:
            if symbol not in symbols:
                print(f"{symbol:8} not cached")
                continue
            r = next(r for r in rows if r["symbol"] == symbol)
            if "error" in r:
                print(f"{symbol:8} {r['error']}: {r['path']}")
            else:
                span = f"{r['covered'][0]} to {r['covered'][1]}" if r.get("covered") else "no complete range"
                print(f"{symbol:8} {r['rows']:6} bars  {span}  fetched {r.get('fetched_at')}")
    return 0


def _yahoo_cache(args) -> PriceCache:
    """The Yahoo cache folder ``info`` and ``clear`` work on: adjusted or raw, daily or one intraday size."""
    from marketdata.bars import parse_interval

    interval = parse_interval(getattr(args, "interval", "1d")).name
    return YahooProvider(cache_dir=args.cache_dir, adjusted=not args.raw, offline=True).cache_for(
        interval, extended=getattr(args, "extended", False))


def _clear(args) -> int:
    cache = _yahoo_cache(args)
    if args.all:
        removed = cache.clear(None)
    else:
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise UserError("--symbols lists no symbols")
        unknown = [s for s in symbols if not cache.path(s).exists()]
        removed = cache.clear(symbols)
        if unknown:
            print(f"not cached: {', '.join(unknown)}", file=sys.stderr)
    print(f"removed {removed} file(s) from {cache.folder}")
    return 0


def _universe(args) -> int:
    if args.refresh:
        universe = refresh_sp500(url=args.url, dest=refreshed_path(args.cache_dir))
        print(f"refreshed: {len(universe.symbols)} symbols written to {universe.path}")
    else:
        universe = load_sp500(cache_dir=args.cache_dir)
    sectors = Counter(universe.table["sector"])
    print(f"S&P 500 snapshot of {universe.snapshot_date}: {len(universe.symbols)} symbols, {len(sectors)} sectors")
    print(f"source: {universe.source}")
    print(f"note: {universe.survivorship_note}")
    return 0


cli = guarded(main, DataError, CacheCorruptError, OSError)

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
