"""Run the strategy over history in Backtrader and collect equity, trades, forecasts and metrics.

Any :class:`~strategies.Strategy` runs here (a ``StrategyParams`` stands for ProphetTrend with those params).

Example:
    >>> from marketdata import load_sample, load_sample_index
    >>> from strategies import ProphetTrend
    >>> data = load_sample().select(["AAPL", "MSFT", "KO"])
    >>> cfg = BacktestConfig(start="2022-11-01", end="2022-12-28")
    >>> result = run_backtest(data, ProphetTrend(top_n=2, history=60, refit_every=10), cfg, index=load_sample_index())
    >>> list(result.equity.columns)
    ['equity', 'benchmark', 'cash', 'invested']
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import backtrader as bt
import numpy as np
import pandas as pd

from backtests import metrics, round_trips as rt
from backtests.backtrader_adapter import ArrayData, BacktestRecorder, StrategyAdapter, backtrader_numbers, model_broker
from marketdata.errors import DataError
from marketdata.prices import PriceData
from strategies.base import Strategy, StrategyError
from strategies.cadence import Cadence
from strategies.execution import DEFAULT_SLIPPAGE_BPS, Costs, Execution
from strategies.forecaster import Forecaster
from strategies.params import StrategyParams
from strategies.prophet_trend import ProphetTrend
from strategies.rules import Rules

TRADE_COLUMNS = ["date", "symbol", "side", "qty", "price", "value", "commission", "decision_date", "reason"]


@dataclass(frozen=True)
class BacktestConfig:
    """The run around the strategy: window, money, the execution model, benchmark, and the shared rules.

    ``benchmark``: ``index`` (the given index series) or ``equal-weight`` (buy-and-hold of the universe).
    ``fill``, ``costs``, ``commission`` and ``slippage_bps`` are the execution model (``strategies.execution``):
    by default orders fill at the decision moment with Alpaca's costs (no commission, regulatory fees on sells).
    """

    start: str | pd.Timestamp = "2021-01-01"
    end: str | pd.Timestamp = "2022-12-28"
    cash: float = 100_000.0
    commission: float = 0.0
    benchmark: str = "index"
    rules: Rules = field(default_factory=Rules)
    fill: str = "decision"
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    costs: str = "alpaca"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cash) and self.cash > 0):
            raise ValueError(f"cash must be a positive finite amount, got {self.cash}")
        self.execution  # commission, slippage, fill and costs: checked now
        if self.benchmark not in ("index", "equal-weight"):
            raise ValueError(f"benchmark must be index or equal-weight, got {self.benchmark!r}")
        if self.start_ts > self.end_ts:
            raise ValueError(f"start {self.start_ts.date()} is after end {self.end_ts.date()}")

    @property
    def execution(self) -> Execution:
        return Execution(self.fill, Costs(self.commission, self.slippage_bps, self.costs))

    @property
    def start_ts(self) -> pd.Timestamp:
        return _day(self.start, "start")

    @property
    def end_ts(self) -> pd.Timestamp:
        return _day(self.end, "end")


def _day(value: str | pd.Timestamp, label: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(value).normalize()
    except (ValueError, TypeError):
        raise ValueError(f"{label} {value!r} is not a date (use YYYY-MM-DD)") from None


@dataclass
class BacktestResult:
    """Everything a run produced; ``summary`` is what ``summary.json`` holds."""

    summary: dict[str, Any]
    equity: pd.DataFrame
    trades: pd.DataFrame
    forecasts: pd.DataFrame
    closes: pd.DataFrame
    rejected: pd.DataFrame
    skipped: pd.DataFrame | None = None


def as_strategy(strategy: Strategy | StrategyParams, forecaster: Forecaster | None = None) -> Strategy:
    """A Strategy; ``StrategyParams`` alone stand for ProphetTrend with those params."""
    if isinstance(strategy, StrategyParams):
        return ProphetTrend(strategy, forecaster=forecaster)
    if not isinstance(strategy, Strategy) and hasattr(strategy, "build"):  # a picklable spec (backtests.cells)
        return strategy.build()
    return strategy


def window_for(data: PriceData, strategy: Strategy | StrategyParams, config: BacktestConfig) -> PriceData:
    """The rows the run needs: ``warmup_bars`` before ``start`` (to warm the strategy up) through ``end``."""
    start, end = config.start_ts, config.end_ts
    dates = data.closes.index
    first = dates.searchsorted(start)
    # Intraday rows are bar starts: the end date includes that whole session.
    last = dates.searchsorted(end + pd.Timedelta(days=1)) if data.intraday else dates.searchsorted(end, side="right")
    if last <= first:
        raise DataError(f"no bars between {start.date()} and {end.date()} (the data covers "
                        f"{dates[0].date()} to {dates[-1].date()})")
    strategy = as_strategy(strategy)
    need = strategy.warmup_bars
    if first < need:
        what = (f"--history {strategy.params.history}: need {need} (history, refit interval and lookback)"
                if isinstance(strategy, ProphetTrend) else f"{strategy.name}: need {need} warm-up bars")
        raise DataError(
            f"too few bars before {start.date()} for {what}, the data has {first}; choose a later --start"
            f"{' or a shorter --history' if isinstance(strategy, ProphetTrend) else ''}"
        )
    return data.between(dates[first - need], dates[last - 1])


def run_backtest(
    data: PriceData,
    strategy: Strategy | StrategyParams,
    config: BacktestConfig = BacktestConfig(),
    *,
    index: pd.Series | None = None,
    on_bar: Callable[[], None] | None = None,
    forecaster: Forecaster | None = None,
    cadence: Cadence | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on ``data`` over ``config``'s window; ``on_bar`` is called once per bar (progress).

    Intraday ``data`` (``data.interval`` ``15m`` etc.) decides at every slot of ``cadence`` (default ``15min``)
    on the bars complete at the slot; daily data decides at every bar, as before."""
    strategy = as_strategy(strategy, forecaster)
    bar = getattr(strategy, "bar", None)
    if bar is not None and bar != data.interval:
        raise DataError(f"the strategy runs on {bar} bars but the data has {data.interval} bars; use --bar "
                        f"{data.interval} or {bar} data")
    if cadence is not None and cadence.intraday and not data.intraday:
        raise DataError(f"cadence {cadence.kind} needs intraday bars; the data has daily bars (use intraday --data "
                        f"and --bar, e.g. 15m)")
    if data.intraday:
        return _run_intraday(data, strategy, config, cadence or Cadence.parse("15min"), index, on_bar)
    window = window_for(data, strategy, config)
    closes = window.closes
    if closes.iloc[strategy.warmup_bars:].isna().all().all():
        raise DataError("no prices inside the window")
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    feeds, candidates = feed_plan(window, strategy, window.closes.index >= config.start_ts)
    numbers = backtrader_numbers(closes.index)
    for symbol in feeds:
        cerebro.adddata(ArrayData(arrays=feed_arrays(window, symbol, numbers)), name=symbol)
    cerebro.broker = model_broker(config.execution, config.cash, intraday=False)
    recorder = BacktestRecorder()
    cerebro.addstrategy(StrategyAdapter, user_strategy=strategy, rules=config.rules, start=config.start_ts.date(),
                        recorder=recorder, on_bar=on_bar, intrabar=window.has_ranges, candidates=candidates,
                        costs=config.execution.costs)
    with frozen_heap():
        cerebro.run(runonce=False)
    return _collect(window, strategy, config, recorder, index)


@contextmanager
def frozen_heap():
    """Keep the garbage collector from re-scanning, at every full collection of the loop, the objects that live for
    the whole run (data, feeds, engine): ``gc.freeze`` them for the run, ``gc.unfreeze`` after (no number changes).

    >>> with frozen_heap():
    ...     gc.get_freeze_count() > 0
    True
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def feed_arrays(window: PriceData, symbol: str, numbers: np.ndarray) -> dict[str, np.ndarray]:
    """One symbol's bars for :class:`ArrayData`: opens filled with the close; highs and lows from the data when it
    has them (gaps filled with the larger or smaller of open and close), else the larger or smaller of the two."""
    close = window.closes[symbol].to_numpy(dtype="float64")
    opens = close if window.opens is None else window.opens[symbol].to_numpy(dtype="float64")
    opens = np.where(np.isnan(opens), close, opens)
    # Daily bars always took pandas' NaN-skipping max and min of open and close, intraday bars numpy's: kept as is.
    larger, smaller = (np.maximum, np.minimum) if window.intraday else (np.fmax, np.fmin)
    top, bottom = larger(opens, close), smaller(opens, close)
    if window.has_ranges:
        high = window.highs[symbol].to_numpy(dtype="float64")
        low = window.lows[symbol].to_numpy(dtype="float64")
        high, low = np.where(np.isnan(high), top, high), np.where(np.isnan(low), bottom, low)
    else:
        high, low = top, bottom
    return {"datetime": numbers, "open": opens, "high": high, "low": low, "close": close}


def _mask_covers_decide(cls: type) -> bool:
    """Whether ``cls``'s ``candidate_mask`` was written with (or after) its ``decide``: a subclass that changes how
    it decides but inherits the mask may buy names the mask leaves out, so it gets the full path.

    >>> class Mine(ProphetTrend):
    ...     def decide(self, closes, positions, cash):
    ...         return {}
    >>> _mask_covers_decide(ProphetTrend), _mask_covers_decide(Mine)
    (True, False)
    """
    def owner(name: str) -> type:
        return next(k for k in cls.__mro__ if name in k.__dict__)

    return issubclass(owner("candidate_mask"), owner("decide"))


def feed_plan(window: PriceData, strategy: Strategy, decides: np.ndarray) -> tuple[list[str], np.ndarray | None]:
    """The symbols that get a Backtrader feed, and per bar which of them ``decide`` sees (None: all of them).

    A strategy without :meth:`~strategies.Strategy.candidate_mask` (or whose ``decide`` is newer than its mask)
    gets the full path. With it, only the names
    some decision bar (``decides``) marks get a feed (at least one, Backtrader's clock), and each bar's mask row
    over those feeds goes to the adapter, which adds the holdings."""
    if not _mask_covers_decide(type(strategy)):
        return list(window.symbols), None
    mask = strategy.candidate_mask(window.closes)
    if mask is None:
        return list(window.symbols), None
    closes = window.closes
    if not isinstance(mask, pd.DataFrame) or mask.shape != closes.shape or list(mask.columns) != list(closes.columns):
        raise StrategyError(f"strategy {strategy.name!r}: candidate_mask must return a boolean frame shaped like "
                            f"its closes ({closes.shape[0]} rows x {closes.shape[1]} symbols)")
    marks = mask.to_numpy(dtype=bool)
    used = marks[np.asarray(decides, dtype=bool)].any(axis=0)
    if not used.any():
        used[0] = True
    return [s for s, keep in zip(closes.columns, used) if keep], marks[:, used]


def decision_bars(stamps: pd.DatetimeIndex, interval: str, cadence: Cadence) -> frozenset:
    """The intraday bars (by start) whose completion is a slot of ``cadence`` in its XNYS session.

    >>> stamps = pd.date_range("2022-11-25 09:30", "2022-11-25 12:45", freq="15min")
    >>> bars = decision_bars(stamps, "15m", Cadence.parse("15min"))
    >>> len(bars), str(min(bars)), str(max(bars))          # early close 13:00: slots 09:45 .. 12:45
    (13, '2022-11-25 09:30:00', '2022-11-25 12:30:00')
    """
    from marketdata.bars import parse_interval, session_hours

    length = parse_interval(interval).length
    if cadence.intraday and cadence.minutes % parse_interval(interval).minutes:
        raise DataError(f"cadence {cadence.kind} does not fall on {interval} bar ends; use a cadence that is a "
                        f"multiple of the bar size")
    stamps = pd.DatetimeIndex(stamps)
    hours = session_hours(stamps.min().date(), stamps.max().date())
    wanted = [pd.Timestamp(slot) - length for o, c in zip(hours["open"], hours["close"])
              for slot in cadence.slots(pd.Timestamp(o).to_pydatetime(), pd.Timestamp(c).to_pydatetime())]
    return frozenset(pd.DatetimeIndex(wanted).intersection(stamps))


def _run_intraday(data, strategy, config, cadence, index, on_bar) -> BacktestResult:
    from marketdata.bars import parse_interval

    window = window_for(data, strategy, config)
    closes = window.closes
    if closes.iloc[strategy.warmup_bars:].isna().all().all():
        raise DataError("no prices inside the window")
    interval = parse_interval(window.interval)
    decide_at = decision_bars(closes.index, window.interval, cadence)
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    numbers = backtrader_numbers(closes.index)
    decides = closes.index.isin(list(decide_at)) & (closes.index >= config.start_ts)
    feeds, candidates = feed_plan(window, strategy, decides)
    for symbol in feeds:
        cerebro.adddata(ArrayData(arrays=feed_arrays(window, symbol, numbers), timeframe=bt.TimeFrame.Minutes,
                                  compression=interval.minutes), name=symbol)
    cerebro.broker = model_broker(config.execution, config.cash, intraday=True)
    recorder = BacktestRecorder()
    cerebro.addstrategy(StrategyAdapter, user_strategy=strategy, rules=config.rules, start=config.start_ts.date(),
                        recorder=recorder, on_bar=on_bar, intrabar=window.has_ranges, decide_at=decide_at,
                        bar_length=interval.length, candidates=candidates,
                        costs=config.execution.costs)
    with frozen_heap():
        cerebro.run(runonce=False)
    result = _collect(window, strategy, config, recorder, index, shift=interval.length)
    result.summary["cadence"] = cadence.to_dict()
    result.summary["interval"] = window.interval
    result.summary["slots"] = int(len(recorder.equity))
    return result


def _book_close_fills(equity: pd.DataFrame, fills: list[dict], closes: pd.DataFrame) -> pd.DataFrame:
    """Fills at a bar's close (cheat-on-close) into that bar's equity row, which was recorded before them: cash
    moves by the fills' value and fees, holdings by their shares at that close, so the row is the book at the close
    after the day's orders (what the paper broker's account shows after the cycle)."""
    at_close = [f for f in fills if f.get("at_close")]
    if not at_close:
        return equity
    frame = pd.DataFrame(at_close)
    sign = frame["side"].map({"buy": -1.0, "sell": 1.0})
    close = [float(closes.at[d, s]) for d, s in zip(frame["date"], frame["symbol"])]
    cash = (sign * frame["value"] - frame["commission"]).groupby(frame["date"]).sum()
    invested = (-sign * frame["qty"] * close).groupby(frame["date"]).sum()
    equity = equity.copy()
    cash, invested = cash.reindex(equity.index, fill_value=0.0), invested.reindex(equity.index, fill_value=0.0)
    # only the fill's own row: later rows are the broker's value, which holds the fills by then
    equity["cash"] = equity["cash"] + cash.to_numpy()
    equity["invested"] = equity["invested"] + invested.to_numpy()
    equity["equity"] = equity["equity"] + cash.to_numpy() + invested.to_numpy()
    return equity


def _from_starting_cash(curve: pd.Series, config: BacktestConfig, window) -> pd.Series:
    """The curve the metrics read. With fills at the close the first row already holds the first day's fills
    (their slippage and fees), so the starting cash goes in front: the return is measured from the cash, as the
    final equity is (next-bar and intraday runs start from the cash already)."""
    if window.intraday or not config.execution.at_close(False) or not len(curve):
        return curve
    start = pd.Series([config.cash], index=[curve.index[0] - pd.Timedelta(days=1)])
    return pd.concat([start, curve])


def forecast_rows(decisions) -> list[dict[str, Any]]:
    """The forecasts the reports draw, one row per (decision, symbol): from a signal with a ``forecast`` (as
    ProphetTrend's are), else from the decision's ``forecasts`` map (a number, or an object with ``yhat``): the
    hook any strategy uses to get a price-and-forecast panel (see :class:`strategies.base.Decision`)."""
    rows = []
    for d in decisions:
        seen = set()
        for s, sig in d.signals.items():
            if hasattr(sig, "forecast"):
                seen.add(s)
                rows.append({"date": d.as_of, "symbol": s, "price": sig.price, "forecast": sig.forecast,
                             "action": sig.action, "reason": sig.reason})
        for s, value in (d.forecasts or {}).items():
            if s not in seen:
                value = getattr(value, "yhat", value)
                rows.append({"date": d.as_of, "symbol": s, "price": np.nan,
                             "forecast": np.nan if value is None else float(value), "action": None, "reason": None})
    return rows


def _collect(window, strategy, config, recorder, index, shift=None) -> BacktestResult:
    equity = pd.DataFrame(recorder.equity).set_index("date")
    equity.index = pd.DatetimeIndex(equity.index, name="date")
    equity = _book_close_fills(equity, recorder.fills, window.closes)
    # Intraday equity is stamped at the slot; the bar it was valued on started one bar earlier.
    trading = window.closes.loc[equity.index if shift is None else equity.index - shift]
    trading.index = equity.index
    if config.benchmark == "index" and index is not None and len(index.reindex(equity.index).dropna()):
        bench_prices = index.reindex(equity.index).ffill().bfill()
        bench_name = str(index.name or "index")
    else:
        rel = trading / trading.bfill().iloc[0]
        bench_prices = rel.mean(axis=1, skipna=True)
        bench_name = "equal-weight buy-and-hold of " + ",".join(window.symbols)
    benchmark = config.cash * bench_prices / bench_prices.iloc[0]
    equity.insert(1, "benchmark", benchmark.to_numpy())
    trades = pd.DataFrame(recorder.fills, columns=TRADE_COLUMNS)
    rejected = pd.DataFrame(recorder.rejected, columns=["decision_date", "symbol", "side", "qty", "status"])
    forecasts = pd.DataFrame(forecast_rows(recorder.decisions),
                             columns=["date", "symbol", "price", "forecast", "action", "reason"])
    summary: dict[str, Any] = {
        "start": equity.index[0].date().isoformat(),
        "end": equity.index[-1].date().isoformat(),
        "bars": int(len(equity)),
        "symbols": window.symbols,
        "strategy": strategy.describe(),
        "params": asdict(strategy.params),
        "rules": config.rules.to_dict(),
        "config": {k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in asdict(config).items()
                   if k != "rules"},
        "execution": config.execution.describe(intraday_bars=bool(window.intraday)),
    }
    # metrics.performance annualises per session for intraday equity (from the starting equity, each session's
    # last slot) and measures the drawdown on every slot; daily equity as it is.
    summary.update(metrics.performance(_from_starting_cash(equity["equity"], config, window)))
    summary.update(metrics.trade_stats(trades))
    # Exposure from the book the orders build (as positions.csv holds it): a holding whose exit triggered at this
    # close is still held at this close, though the strategy decided as if it were gone.
    moved, on_clock = rt.on_equity_clock(trades, window.closes, equity.index, None if shift is None else window.interval)
    book = rt.replay(moved, on_clock, equity, config.cash)
    summary["exposure"] = metrics.exposure(book.weights.sum(axis=1))
    summary["bars_with_position"] = metrics.bars_with_position(book.qty)
    summary["costs"] = metrics.costs(trades, config.cash, float(equity["equity"].iloc[-1]))
    summary["turnover"] = metrics.turnover(trades, equity["equity"])
    summary["final_equity"] = float(equity["equity"].iloc[-1])
    summary["rejected_orders"] = int(len(rejected))
    summary["skipped_orders"] = int(len(recorder.skipped))
    bench = metrics.performance(equity["benchmark"])
    summary["benchmark"] = {"name": bench_name, **{k: bench[k] for k in ("total_return", "cagr", "sharpe", "max_drawdown")}}
    summary["data"] = dict(window.provenance)
    skipped = pd.DataFrame(recorder.skipped, columns=["decision_date", "symbol", "side", "action", "reason"])
    return BacktestResult(summary, equity, trades, forecasts, window.closes, rejected, skipped)
