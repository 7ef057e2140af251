"""Small promises of the command lines: dates like "today", where reports land, --quiet's one line, progress
lines when output is not a terminal, and the sweep naming the days it leaves out."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_report_since_today_and_live_report_out_is_git_ignored():
    from deploy.__main__ import make_parser
    from live.__main__ import build_parser

    today = dt.datetime.now(dt.timezone.utc).date()
    assert make_parser().parse_args(["report", "--since", "today"]).since == today
    assert make_parser().parse_args(["report", "--since", "2022-06-01"]).since == dt.date(2022, 6, 1)
    out = build_parser().parse_args(["report", "--journal", "j.jsonl"]).out
    assert out == Path("runs/live_report")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "live_report.html")], cwd=ROOT)
    assert ignored.returncode == 0  # git check-ignore: 0 when ignored


def test_backtest_shows_progress_lines_off_a_terminal_and_quiet_prints_only_the_run_folder(tmp_path, capsys):
    from backtests.run import cli

    window = ["--start", "2022-11-01", "--end", "2022-12-28", "--symbols", "AAPL,MSFT,KO", "--top-n", "2",
              "--no-plot", "--refit-every", "20"]
    assert cli([*window, "--out", str(tmp_path / "loud")]) == 0
    err = capsys.readouterr().err.splitlines()
    ticks = [line for line in err if line.startswith("backtest: ")]
    assert len(ticks) >= 10 and ticks[-1].endswith("(100%)"), err  # a line every 5% or so
    assert cli([*window, "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [captured.out.strip()]
    assert captured.out.startswith(f"wrote {tmp_path / 'quiet'}/")
    assert "backtest: " not in captured.err


def test_sweep_names_the_days_no_test_window_covers():
    from backtests.sweep import unused_tail
    from backtests.walkforward import split_windows

    days = pd.bdate_range("2022-01-03", periods=30)
    windows = split_windows(days, train=10, test=8)  # 10 + 8 + 8 = 26: the last 4 days fill no test window
    spec = SimpleNamespace(start="2022-01-03", end=str(days[-1].date()), test=8)
    note = unused_tail(days, spec, windows[-1])
    assert note == (f"note: the last 4 trading days ({days[26].date()} to {days[29].date()}, 13% of the range) are "
                    "not evaluated: they do not fill another --test window of 8 bars")
    assert unused_tail(days[:26], SimpleNamespace(start="2022-01-03", end=str(days[25].date()), test=8),
                       windows[-1]) is None
