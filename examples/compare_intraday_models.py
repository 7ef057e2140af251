"""Held-out comparison of ProphetTrend's two intraday models, ``session`` and ``clock``, on the same windows.

For each window: fit on ``--history`` bars ending at a random bar (the decision bar), read the forecast
``--horizon`` bars ahead, and compare with the close that actually came. Reported per model: the mean absolute
error of that forecast (a fraction of price), the share of windows where it called the direction of the move
right, and, between the models, how often their decisions (buy / sell / hold at ``--band``) agree.

Data: by default SYNTHETIC bars (``examples/synthetic_intraday.py``: a random walk, overnight gaps, and a
repeating intraday shape of ``--pattern`` amplitude; ``--pattern 0`` is the walk alone); ``--csv`` runs it on any
intraday CSV instead (e.g. real bars exported from Alpaca).

    python examples/compare_intraday_models.py --windows 60
    python examples/compare_intraday_models.py --csv my_15m.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _synthetic_module():
    spec = importlib.util.spec_from_file_location("synthetic_intraday", Path(__file__).with_name("synthetic_intraday.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decision(price: float, yhat: float, band: float) -> str:
    return "buy" if price < yhat * (1 - band) else ("sell" if price > yhat * (1 + band) else "hold")


def compare(closes: pd.DataFrame, *, bar: str, history: int, horizon: int, windows: int, band: float,
            seed: int = 3) -> dict:
    """Both models on the same held-out windows of ``closes``; returns the figures per model and the agreement."""
    from strategies.forecaster import Forecaster
    from strategies.params import StrategyParams

    rng = np.random.default_rng(seed)
    picks = [(closes.columns[k % closes.shape[1]], int(rng.integers(history + 30, len(closes) - horizon)))
             for k in range(windows)]
    out: dict = {}
    decisions: dict[str, list[str]] = {}
    for model in ("session", "clock"):
        forecaster = Forecaster(StrategyParams(bar=bar, history=history, horizon=horizon, refit_every=1,
                                               intraday_model=model))
        err, right, acts = [], [], []
        for symbol, end in picks:
            window = closes[[symbol]].iloc[: end + 1]
            point = forecaster.forecasts(window, [symbol])[symbol]
            price, actual = float(closes[symbol].iloc[end]), float(closes[symbol].iloc[end + horizon])
            err.append(abs(point.yhat - actual) / actual)
            right.append(np.sign(point.yhat - price) == np.sign(actual - price))
            acts.append(_decision(price, point.yhat, band))
        decisions[model] = acts
        out[model] = {"mae": float(np.mean(err)), "direction": float(np.mean(right)),
                      "fallbacks": forecaster.fallbacks}
    out["naive_mae"] = float(np.mean([abs(closes[s].iloc[e] - closes[s].iloc[e + horizon]) / closes[s].iloc[e + horizon]
                                      for s, e in picks]))
    out["agreement"] = float(np.mean([a == b for a, b in zip(decisions["session"], decisions["clock"])]))
    out["windows"] = len(picks)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python examples/compare_intraday_models.py", description=__doc__.split("\n")[0])
    p.add_argument("--csv", type=Path, default=None, help="an intraday CSV (default: SYNTHETIC bars)")
    p.add_argument("--bar", default="15m")
    p.add_argument("--history", type=int, default=130, help="bars fitted (130: five sessions of 15m bars)")
    p.add_argument("--horizon", type=int, default=4, help="bars ahead (4: one hour of 15m bars)")
    p.add_argument("--windows", type=int, default=60)
    p.add_argument("--band", type=float, default=0.002)
    p.add_argument("--pattern", type=float, nargs="*", default=[0.004, 0.0],
                   help="SYNTHETIC data: amplitudes of the intraday shape to try")
    args = p.parse_args(argv)
    if args.csv is not None:
        from marketdata.csvfile import load_csv

        data = load_csv(args.csv)
        sets = [(f"{args.csv} ({data.interval})", data.closes, data.interval)]
    else:
        make = _synthetic_module().synthetic_frame
        sets = []
        for amp in args.pattern:
            frame = make("2022-03-01", "2022-06-30", bar=args.bar, pattern=amp)
            closes = frame.pivot(columns="symbol", values="close")
            sets.append((f"SYNTHETIC {args.bar}, intraday shape {amp:.3%}, overnight gaps", closes, args.bar))
    for label, closes, bar in sets:
        r = compare(closes, bar=bar, history=args.history, horizon=args.horizon, windows=args.windows,
                    band=args.band)
        print(f"{label}: {r['windows']} held-out windows, {args.history} bars fitted, {args.horizon} bars ahead")
        for model in ("session", "clock"):
            m = r[model]
            print(f"  {model:8s} MAE {m['mae']:.3%}  direction right {m['direction']:.0%}  stan fallbacks {m['fallbacks']}")
        print(f"  no-change forecast MAE {r['naive_mae']:.3%}; decisions agree {r['agreement']:.0%} (band {args.band:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
