"""The bundled XNYS session table (marketdata/sessions.py) is exchange_calendars' calendar, and a cold process
answers from it without importing exchange_calendars; when the file may not be used, exchange_calendars answers."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars
import numpy as np
import pandas as pd
import pytest

from brokers.base import BrokerError, Clock, Session
from brokers.calendar import MarketCalendar
from marketdata import sessions
from marketdata.bars import in_session, session_hours

ROOT = Path(__file__).resolve().parents[1]
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def xnys():
    """exchange_calendars' own calendar, built as the code built it before the table: the reference."""
    return exchange_calendars.get_calendar("XNYS", start="1990-01-02")


@pytest.fixture
def fresh_table(monkeypatch):
    """Each use of ``session_table`` in the test reads the (monkeypatched) file again; the cache is reset after."""
    sessions.session_table.cache_clear()
    yield
    sessions.session_table.cache_clear()


def _ns(column: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(column).tz_convert("UTC").as_unit("ns").asi8


def test_bundled_file_is_exchange_calendars_calendar_over_its_whole_range():
    with np.load(sessions.BUNDLED_FILE, allow_pickle=False) as saved:
        recorded = {key: saved[key] for key in saved.files}
    assert str(recorded["exchange_calendars_version"]) == sessions.installed_version() == exchange_calendars.__version__
    assert (str(recorded["start"]), str(recorded["end"])) == ("1990-01-02", "2030-12-31")
    reference = exchange_calendars.get_calendar("XNYS", start="1990-01-02", end="2030-12-31").schedule
    days = recorded["days"]
    assert days.dtype == np.dtype("datetime64[D]") and np.all(np.diff(days.astype(np.int64)) > 0)
    np.testing.assert_array_equal(days, reference.index.to_numpy().astype("datetime64[D]"))
    np.testing.assert_array_equal(recorded["opens"], _ns(reference["open"]))
    np.testing.assert_array_equal(recorded["closes"], _ns(reference["close"]))
    assert str(days[0]) == "1990-01-02" and str(days[-1]) == "2030-12-31"

    def hours(day: str) -> tuple[str, str]:
        i = int(np.searchsorted(days, np.datetime64(day)))
        assert str(days[i]) == day, f"{day} is not a session in the file"
        both = pd.to_datetime(np.array([recorded["opens"][i], recorded["closes"][i]]), utc=True)
        return tuple(t.strftime("%H:%M%z") for t in both.tz_convert("America/New_York"))

    assert hours("2022-11-25") == ("09:30-0500", "13:00-0500")       # the day after Thanksgiving closes early
    assert hours("2022-03-11") == ("09:30-0500", "16:00-0500")       # the Friday before daylight saving
    assert hours("2022-03-14") == ("09:30-0400", "16:00-0400")       # the Monday after
    assert hours("2022-11-07") == ("09:30-0500", "16:00-0500")       # back to standard time
    assert np.datetime64("2025-01-09") not in days                   # national day of mourning (President Carter)
    assert np.datetime64("2012-10-29") not in days and np.datetime64("2001-09-11") not in days
    assert hours("2025-01-08")[1] == "16:00-0500" and hours("2025-01-10")[0] == "09:30-0500"


def test_the_table_in_use_is_the_bundled_one_cut_to_exchange_calendars_default_end(xnys, fresh_table):
    table = sessions.session_table()
    assert table.source.startswith("xnys_sessions.npz")
    assert (table.first, table.last) == (xnys.first_session.date(), xnys.last_session.date())
    np.testing.assert_array_equal(table.days, xnys.sessions.to_numpy().astype("datetime64[D]"))
    np.testing.assert_array_equal(table.opens, _ns(xnys.schedule["open"]))
    np.testing.assert_array_equal(table.closes, _ns(xnys.schedule["close"]))
    assert sessions.session_table() is table   # one table per process


# --- MarketCalendar against exchange_calendars, computed directly ----------------------------------------------

def _reference_session(xnys, day: dt.date) -> Session | None:
    label = pd.Timestamp(day)
    if not xnys.is_session(label):
        return None
    return Session(date=day, open=xnys.session_open(label).tz_convert(NEW_YORK).to_pydatetime(),
                   close=xnys.session_close(label).tz_convert(NEW_YORK).to_pydatetime())


def _reference_clock(xnys, now: dt.datetime) -> Clock:
    day = now.date()
    today = _reference_session(xnys, day)
    upcoming = xnys.date_to_session(pd.Timestamp(day) + pd.Timedelta(days=1), direction="next")
    after = _reference_session(xnys, upcoming.date())
    if today is not None and today.open <= now < today.close:
        return Clock(now=now, is_open=True, next_open=after.open, next_close=today.close)
    nxt = today if today is not None and now < today.open else after
    return Clock(now=now, is_open=False, next_open=nxt.open, next_close=nxt.close)


def _days(xnys) -> list[dt.date]:
    first, last = xnys.first_session.date(), xnys.last_session.date()
    edges = [first + dt.timedelta(days=i) for i in range(40)] + [last - dt.timedelta(days=i) for i in range(40)]
    dense = [dt.date(2021, 12, 1) + dt.timedelta(days=i) for i in range(3 * 366)]   # DST, early closes, holidays
    mourning = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(20)]
    rng = np.random.default_rng(20)
    spread = [first + dt.timedelta(days=int(i)) for i in rng.integers(0, (last - first).days + 1, 1500)]
    return sorted(set(edges + dense + mourning + spread))


def test_market_calendar_answers_as_exchange_calendars(xnys, fresh_table):
    cal = MarketCalendar()
    first, last = xnys.first_session.date(), xnys.last_session.date()
    days = _days(xnys)
    assert len(days) > 2400
    for day in days:
        got, want = cal.session(day), _reference_session(xnys, day)
        assert got == want, day
        if got is not None:
            assert got.open.tzinfo is NEW_YORK and got.close.tzinfo is NEW_YORK
            assert got.open.utcoffset() == want.open.utcoffset() and got.close.utcoffset() == want.close.utcoffset()
        if day > first:
            assert cal.previous_session(day) == xnys.date_to_session(
                pd.Timestamp(day) - pd.Timedelta(days=1), direction="previous").date(), day
        if day < last:
            for hour, minute in ((0, 0), (9, 29), (9, 30), (12, 59), (13, 0), (16, 0)):
                now = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
                assert cal.clock(now) == _reference_clock(xnys, now), now
    for start, end in ((first, first + dt.timedelta(days=60)), (dt.date(2022, 11, 1), dt.date(2023, 1, 10)),
                       (last - dt.timedelta(days=30), last), (dt.date(2025, 1, 6), dt.date(2025, 1, 6))):
        want = [_reference_session(xnys, d.date()) for d in xnys.sessions_in_range(pd.Timestamp(start),
                                                                                  pd.Timestamp(end))]
        assert cal.sessions(start, end) == want


def test_days_outside_the_coverage_and_the_edges_are_clear_broker_errors(xnys, fresh_table):
    cal = MarketCalendar()
    first, last = xnys.first_session.date(), xnys.last_session.date()
    before, beyond = first - dt.timedelta(days=1), last + dt.timedelta(days=1)
    for call in (lambda: cal.session(before), lambda: cal.session(beyond), lambda: cal.previous_session(beyond),
                 lambda: cal.sessions(before, first), lambda: cal.sessions(last, beyond),
                 lambda: cal.clock(dt.datetime(beyond.year, beyond.month, beyond.day, 12, tzinfo=NEW_YORK))):
        with pytest.raises(BrokerError) as refused:
            call()
        assert str(refused.value).startswith(f"the XNYS calendar covers {first} to {last}, not ")
    # exchange_calendars raised its own DateOutOfBounds at these edges; now the broker's error says why.
    with pytest.raises(BrokerError, match=r"^the XNYS calendar has no session before 1990-01-02 \(it starts on "
                                          r"1990-01-02\)$"):
        cal.previous_session(first)
    after_close = dt.datetime(last.year, last.month, last.day, 16, 30, tzinfo=NEW_YORK)
    with pytest.raises(BrokerError, match=rf"^the XNYS calendar has no session after {last} \(it ends on {last}\)$"):
        cal.clock(after_close)
    assert cal.clock(after_close.replace(hour=9, minute=0)).next_open == _reference_session(xnys, last).open


# --- when the bundled file may not be used ----------------------------------------------------------------------

def _rewritten(tmp_path: Path, **changes) -> Path:
    with np.load(sessions.BUNDLED_FILE, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays.update({key: np.array(value) if isinstance(value, str) else value for key, value in changes.items()})
    path = tmp_path / "xnys_sessions.npz"
    with path.open("wb") as out:
        np.savez_compressed(out, **arrays)
    return path


def _answers(cal: MarketCalendar) -> list:
    days = [dt.date(1990, 1, 2), dt.date(2022, 11, 25), dt.date(2022, 3, 14), dt.date(2025, 1, 9), cal._table.last]
    moment = dt.datetime(2022, 11, 25, 12, 59, tzinfo=NEW_YORK)
    return ([cal.session(d) for d in days] + [cal.previous_session(dt.date(2025, 1, 10)), cal.clock(moment),
            cal.sessions(dt.date(2024, 12, 20), dt.date(2025, 1, 15)), (cal._table.first, cal._table.last)])


def _fell_back(monkeypatch, path: Path) -> MarketCalendar:
    monkeypatch.setattr(sessions, "BUNDLED_FILE", path)
    sessions.session_table.cache_clear()
    cal = MarketCalendar()
    assert cal._table.source == f"exchange_calendars {exchange_calendars.__version__}", cal._table.source
    return cal


def test_a_file_from_another_exchange_calendars_version_falls_back(tmp_path, monkeypatch, fresh_table):
    bundled = _answers(MarketCalendar())
    cal = _fell_back(monkeypatch, _rewritten(tmp_path, exchange_calendars_version="4.13.2"))
    assert _answers(cal) == bundled
    hours = session_hours(dt.date(2022, 11, 20), dt.date(2022, 11, 30))
    assert str(hours.loc["2022-11-25", "close"]) == "2022-11-25 13:00:00" and "2022-11-24" not in hours.index


def test_a_file_that_ends_before_the_default_end_falls_back(tmp_path, monkeypatch, fresh_table):
    bundled = _answers(MarketCalendar())
    end = sessions.default_end() - pd.Timedelta(days=1)
    with np.load(sessions.BUNDLED_FILE, allow_pickle=False) as saved:
        keep = saved["days"] <= np.datetime64(end.date())
        days, opens, closes = saved["days"][keep], saved["opens"][keep], saved["closes"][keep]
    short = _rewritten(tmp_path, end=str(end.date()), days=days, opens=opens, closes=closes)
    assert sessions.read_bundled(short) is None
    assert _answers(_fell_back(monkeypatch, short)) == bundled


def test_a_missing_or_damaged_file_falls_back(tmp_path, monkeypatch, fresh_table):
    bundled = _answers(MarketCalendar())
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(sessions.BUNDLED_FILE.read_bytes()[:5000])
    flipped = tmp_path / "flipped.npz"
    data = bytearray(sessions.BUNDLED_FILE.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)   # inside the compressed arrays
    flipped.write_bytes(bytes(data))
    with np.load(sessions.BUNDLED_FILE, allow_pickle=False) as saved:
        days = saved["days"].copy()
    days[[100, 101]] = days[[101, 100]]                       # decodes, but two sessions out of order
    unsorted = _rewritten(tmp_path, days=days)
    assert _answers(_fell_back(monkeypatch, tmp_path / "absent.npz")) == bundled
    for path in (damaged, flipped, unsorted):
        assert _answers(_fell_back(monkeypatch, path)) == bundled


def test_regular_and_extended_hours_match_exchange_calendars(xnys, fresh_table):
    hours = session_hours(dt.date(1989, 6, 1), dt.date(2040, 1, 1))
    schedule = xnys.schedule
    assert hours.index.equals(pd.DatetimeIndex(schedule.index, name="date"))
    assert (hours["open"] == schedule["open"].dt.tz_convert("America/New_York").dt.tz_localize(None)).all()
    assert (hours["close"] == schedule["close"].dt.tz_convert("America/New_York").dt.tz_localize(None)).all()
    extended = session_hours(dt.date(2022, 11, 24), dt.date(2022, 11, 28), extended=True).astype(str)
    assert extended.to_dict("records") == [{"open": "2022-11-25 04:00:00", "close": "2022-11-25 17:00:00"},
                                           {"open": "2022-11-28 04:00:00", "close": "2022-11-28 20:00:00"}]
    stamps = pd.DatetimeIndex(["2025-01-08 15:45", "2025-01-09 10:00", "2022-03-14 09:30", "2022-03-14 16:00",
                               "1989-12-29 10:00", "2040-01-03 10:00"])
    assert in_session(stamps).tolist() == [True, False, True, False, False, False]


# --- a cold process ----------------------------------------------------------------------------------------------

COLD = """
import sys, datetime as dt
from brokers.calendar import MarketCalendar
session = MarketCalendar().session(dt.date(2022, 11, 25))
print(session.close.isoformat(), "exchange_calendars" in sys.modules)
from marketdata.bars import session_hours
print(len(session_hours(dt.date(2022, 1, 1), dt.date(2022, 12, 31))), "exchange_calendars" in sys.modules)
"""


def test_a_cold_process_answers_without_importing_exchange_calendars():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", COLD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2022-11-25T13:00:00-05:00", "False", "251", "False"]


CYCLE = """
import runpy, sys
sys.argv = ["lambda_function.py", "--now", sys.argv[1]]
try:
    runpy.run_path("lambda_function.py", run_name="__main__")
finally:
    print("exchange_calendars imported:", "exchange_calendars" in sys.modules, file=sys.stderr)
"""


def test_a_cold_live_cycle_trades_without_importing_exchange_calendars(tmp_path):
    from _live_env import SLOT, live_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "ALPACA_", "STRATEGY_", "BROKER"))}
    env.update(live_env(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", CYCLE, SLOT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"status": "traded"' in done.stdout
    assert done.stderr.splitlines()[-1] == "exchange_calendars imported: False"


def test_the_command_line_shows_the_table_and_refuses_bad_flags(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run([sys.executable, "-m", "marketdata.sessions"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "XNYS sessions 1990-01-02 to" in shown.stdout and "from xnys_sessions.npz (exchange_calendars" in shown.stdout
    bad = subprocess.run([sys.executable, "-m", "marketdata.sessions", "--wrtie"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


def test_write_rebuilds_the_same_table_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    copy = tmp_path / "xnys_sessions.npz"
    sessions.write(copy)
    with np.load(copy, allow_pickle=False) as new, np.load(sessions.BUNDLED_FILE, allow_pickle=False) as old:
        assert sorted(new.files) == sorted(old.files)
        for key in old.files:
            np.testing.assert_array_equal(new[key], old[key])
    before = copy.read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", refuse)
    with pytest.raises(OSError):
        sessions.write(copy)
    assert copy.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["xnys_sessions.npz"]
