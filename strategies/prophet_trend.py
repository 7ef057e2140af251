"""ProphetTrend as a :class:`~strategies.base.Strategy`: momentum universe, Prophet forecast, mean-reverting signal.

Both homes call :meth:`ProphetTrend.decide` (the backtest at every bar with the history up to it, the live cycle
with the history up to the moment it runs); :func:`decide` is the same decision as a plain function. Nothing here
reads the clock, the network or a broker.

Example:
    >>> import numpy as np, pandas as pd
    >>> idx = pd.bdate_range("2021-01-04", periods=80)
    >>> rising = np.linspace(50, 90, 80); rising[-1] = 60.0      # a sharp dip below a rising trend
    >>> closes = pd.DataFrame({"DIP": rising, "FLAT": np.full(80, 20.0)}, index=idx)
    >>> params = StrategyParams(top_n=2, lookback=5, history=60, refit_every=1)
    >>> d = decide(closes, positions={}, cash=10_000.0, params=params)
    >>> [(o.symbol, o.side) for o in d.orders]
    [('DIP', 'buy')]
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from strategies.base import Decision, Position, Strategy, decision_window, last_prices
from strategies.forecaster import Forecaster
from strategies.params import StrategyParams
from strategies.signals import Signal, decide_action
from strategies.sizing import size_signals, target_weights
from strategies.universe import top_n_by_momentum, top_n_mask


def decide(
    closes: pd.DataFrame,
    positions: Mapping[str, Position],
    cash: float,
    params: StrategyParams,
    forecaster: Forecaster | None = None,
    candidates: Sequence[str] | None = None,
) -> Decision:
    """Decide at the last row of ``closes`` (rows: dates ascending, columns: symbols; NaN where no price).

    ``positions`` maps symbol to :class:`Position`; held symbols are always evaluated, so they can be sold.
    Pass the same ``forecaster`` across calls to reuse fits within a refit block. ``candidates`` limits the
    momentum ranking (default: every column), so a holding outside the universe is evaluated but never ranked.
    """
    if closes.empty:
        raise ValueError("no closes to decide on")
    forecaster = forecaster or Forecaster(params)
    as_of = pd.Timestamp(closes.index[-1])
    ranked = closes if candidates is None else closes[[c for c in candidates if c in closes.columns]]
    universe = top_n_by_momentum(ranked, params.top_n, params.lookback, min_history=params.history)
    held = [s for s, p in positions.items() if p.qty > 0]
    evaluate = universe + sorted(s for s in held if s not in universe)
    last = closes.iloc[-1]
    priced = [s for s in evaluate if s in closes.columns and np.isfinite(last.get(s, np.nan))]
    forecasts = forecaster.forecasts(closes, priced)
    signals = {}
    for symbol in priced:
        price = float(last[symbol])
        point = forecasts.get(symbol)
        action, reason = decide_action(price, None if point is None else point.yhat, positions.get(symbol), params)
        signals[symbol] = Signal(symbol, price, None if point is None else point.yhat, action, reason, symbol in universe)
    orders = size_signals(list(signals.values()), positions, cash, params)
    prices = last_prices(closes)
    weights = target_weights(positions, orders, prices, cash)
    return Decision(as_of=as_of, orders=orders, target_weights=weights, universe=universe, signals=signals,
                    forecasts=forecasts, info={"fits": forecaster.fits, "stan_fallbacks": forecaster.fallbacks})


class ProphetTrend(Strategy):
    """The seed strategy. Parameters: :class:`~strategies.params.StrategyParams`.

    ``candidates`` (set by the home before ``decide``; ``None`` is every column) limits the momentum ranking, so a
    holding outside the live universe is still evaluated, so it can be sold, but never ranked.

    >>> ProphetTrend(top_n=5).params.top_n, ProphetTrend().warmup_bars
    (5, 256)
    """

    name = "prophet-trend"
    Params = StrategyParams

    def __init__(self, params: StrategyParams | None = None, forecaster: Forecaster | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.forecaster = forecaster or Forecaster(self.params)
        self.candidates: Sequence[str] | None = None

    @property
    def warmup_bars(self) -> int:  # type: ignore[override]
        return self.params.warmup_bars

    @property
    def bar(self) -> str:
        """The bar size both homes feed ``decide`` (``1d`` or intraday: ``1m 5m 15m 1h``)."""
        return self.params.bar

    @property
    def extra_window_bars(self) -> int:
        # The forecast is read ``horizon`` bars after the refit bar; these rows keep the window's first refit full.
        return self.params.horizon

    def candidate_mask(self, closes: pd.DataFrame) -> pd.DataFrame:
        """Every bar's momentum top ``top_n`` at once (:func:`~strategies.universe.top_n_mask`): only these can be
        bought; holdings are evaluated whatever the mask says, and the ranking among the marked columns is the
        ranking among all of them, so a decision on just these columns (plus holdings) is the same decision.

        >>> idx = pd.bdate_range("2022-01-03", periods=4)
        >>> closes = pd.DataFrame({"UP": [1, 2, 3, 4.0], "DOWN": [4, 3, 2, 1.0]}, index=idx)
        >>> ProphetTrend(top_n=1, lookback=2, history=10).candidate_mask(closes)["UP"].tolist()
        [False, False, False, False]
        """
        ranked = closes if self.candidates is None else closes[[c for c in self.candidates if c in closes.columns]]
        mask = top_n_mask(ranked, self.params.top_n, self.params.lookback, min_history=self.params.history,
                          window=decision_window(self))
        return mask.reindex(columns=closes.columns, fill_value=False)

    def decide(self, closes: pd.DataFrame, positions: Mapping[str, Position], cash: float) -> Decision:
        return decide(closes, positions, cash, self.params, self.forecaster, candidates=self.candidates)
