"""Bad input: a one-line `error: ...` on stderr, exit code 2, no traceback, and no output folder left behind."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from backtests.run import cli

BASE = ["--quiet", "--no-plot", "--top-n", "2", "--history", "30", "--lookback", "5", "--refit-every", "10"]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def long_csv(rows):
    return "date,symbol,close\n" + "\n".join(rows) + "\n"


CASES = {
    "missing file": (lambda t: ["--data", str(t / "nope.csv")], "no such file"),
    "unreadable file": (lambda t: ["--data", str(t)], "no such file"),
    "binary garbage": (lambda t: ["--data", str(_binary(t))], "cannot read"),
    "missing close column": (lambda t: ["--data", write(t, "p.csv", "date,symbol,open\n2022-01-03,A,1\n")],
                             "no close column"),
    "non-numeric price": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,1", "2022-01-04,A,abc"]))],
                          "non-numeric close price 'abc' for A on 2022-01-04"),
    "duplicate date": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,1", "2022-01-03,A,2"]))],
                       "duplicate date 2022-01-03"),
    "duplicate date wide": (lambda t: ["--data", write(t, "p.csv", "date,A\n2022-01-03,1\n2022-01-03,2\n")],
                            "duplicate date 2022-01-03"),
    "infinite price wide": (lambda t: ["--data", write(t, "p.csv", "date,A,B\n2022-01-03,1,2\n2022-01-04,inf,2\n")],
                            "non-finite close price inf for A on 2022-01-04"),
    "infinite price long": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,1", "2022-01-04,A,+inf"]))],
                            "non-finite close price inf for A on 2022-01-04"),
    "minus infinite price": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,-inf", "2022-01-04,A,1"]))],
                             "non-finite close price -inf for A on 2022-01-03"),
    "infinite open": (lambda t: ["--data", write(t, "p.csv", "date,symbol,open,close\n2022-01-03,A,1,1\n"
                                                              "2022-01-04,A,Infinity,1\n")],
                      "non-finite open price inf for A on 2022-01-04"),
    "duplicated column wide": (lambda t: ["--data", write(t, "p.csv", "date,AAPL,KO,AAPL\n2022-01-03,1,2,3\n")],
                               "duplicated column 'AAPL'"),
    "duplicated column any case": (lambda t: ["--data", write(t, "p.csv", "date,AAPL,aapl\n2022-01-03,1,2\n")],
                                   "duplicated column 'aapl'"),
    "duplicated column long": (lambda t: ["--data", write(t, "p.csv", "date,symbol,close,Close\n2022-01-03,A,1,2\n")],
                               "duplicated column 'Close'"),
    "unknown symbol": (lambda t: ["--symbols", "AAPL,NOPE"], "unknown symbol(s) NOPE"),
    "start after end": (lambda t: ["--start", "2022-06-01", "--end", "2022-01-01"], "start 2022-06-01 is after end"),
    "empty window": (lambda t: ["--start", "2024-01-01", "--end", "2024-02-01"], "no bars between"),
    "too few bars for history": (lambda t: ["--start", "1990-02-01", "--end", "1990-06-01"], "too few bars before"),
    "bad date": (lambda t: ["--start", "yesterday-ish"], "is not a date"),
    "bad number": (lambda t: ["--cash", "lots"], "invalid float value"),
    "bad parameter": (lambda t: ["--band", "-1"], "band must be"),
    # dates are ISO 8601 or follow --date-format: never guessed (a day-first date reorders the history)
    "dd/mm/yyyy dates": (lambda t: ["--data", write(t, "p.csv", "date,A\n03/01/2022,1\n04/01/2022,2\n")],
                         "line 2 of"),
    "dd.mm.yyyy dates": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,1", "04.01.2022,A,2"]))],
                         "line 3 of"),
    "integer yyyymmdd dates": (lambda t: ["--data", write(t, "p.csv", "date,A\n20220103,1\n20220104,2\n")],
                               "date '20220103' is not ISO 8601"),
    "impossible date": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-03,A,1", "2022-02-30,A,2"]))],
                        "line 3 of"),
    "wrong --date-format": (lambda t: ["--data", write(t, "p.csv", "date,A\n2022-01-03,1\n"), "--date-format",
                                       "%d/%m/%Y"], "date '2022-01-03' is not a valid date in the --date-format"),
    "--date-format on the sample": (lambda t: ["--date-format", "%d/%m/%Y"], "reads a CSV file's dates"),
    "a Saturday row": (lambda t: ["--data", write(t, "p.csv", long_csv(["2022-01-07,A,1", "2022-01-08,A,2"]))],
                       "line 3 of"),
    "a holiday row": (lambda t: ["--data", write(t, "p.csv", "date,A\n2022-01-14,1\n2022-01-17,2\n")],
                      "2022-01-17 is a Monday the NYSE was closed"),
}


def _binary(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    make_args, expected = CASES[case]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        cli(BASE + make_args(tmp_path) + ["--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backtests.run", "--data", str(tmp_path / "missing.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no such file") and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_failure_mid_run_leaves_no_complete_looking_folder(tmp_path, monkeypatch, capsys):
    import backtests.run as run

    def explode(*args, **kwargs):
        raise ValueError("disk full while drawing")

    monkeypatch.setattr("backtests.report.write_report", explode)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        run.cli(["--symbols", "AAPL,KO", "--start", "2022-12-01", "--quiet", "--top-n", "1", "--history", "30",
                 "--lookback", "5", "--refit-every", "10", "--out", str(out)])
    assert "disk full" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_csv_shapes_give_the_same_closes(tmp_path):
    from marketdata import load_csv, load_sample

    closes = load_sample().closes.loc["2022-01-03":"2022-03-01", ["AAPL", "KO"]]
    wide = tmp_path / "wide.csv"
    closes.to_csv(wide, index_label="Date")
    long = tmp_path / "long.csv"
    closes.stack().rename("close").rename_axis(["date", "symbol"]).reset_index().to_csv(long, index=False)
    a, b = load_csv(wide), load_csv(long)
    assert a.closes.equals(b.closes[["AAPL", "KO"]])
    assert a.provenance["csv_shape"] == "wide" and b.provenance["csv_shape"] == "long"


def test_content_hash_ignores_the_date_resolution():
    import pandas as pd

    from marketdata.prices import content_hash

    frame = pd.DataFrame({"A": [1.0, 2.0]}, index=pd.to_datetime(["2022-01-03", "2022-01-04"]))
    for unit in ("s", "ms", "us"):
        other = frame.copy()
        other.index = frame.index.as_unit(unit)
        assert content_hash([other]) == content_hash([frame])
    changed = frame.copy()
    changed.iloc[1, 0] = 2.5
    assert content_hash([changed]) != content_hash([frame])


# --- write-time checks happen before the run, and --overwrite replaces only a previous run ------------------

RUN = ["--symbols", "AAPL,KO", "--start", "2022-12-01", "--end", "2022-12-28"] + BASE


@pytest.fixture
def no_run(monkeypatch):
    """The run itself: refused, so a check that only happens after it shows up as this error."""
    import backtests.run as run

    def refuse(*args, **kwargs):
        raise AssertionError("the backtest ran before its write-time checks")

    monkeypatch.setattr(run, "run_backtest", refuse)


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores the mode bits; sysfs refuses new folders even to root
        folder.chmod(0o755)
        if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and _can_mkdir("/sys"):
            pytest.skip("no read-only folder available")
        return Path("/sys")
    return folder


def _can_mkdir(where):
    try:
        os.rmdir(tempfile.mkdtemp(dir=where))
        return True
    except OSError:
        return False


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


WRITE_TIME = {
    "cash inf": (lambda t: ["--cash", "inf"], "cash must be a positive finite amount, got inf"),
    "cash -inf": (lambda t: ["--cash=-inf"], "cash must be a positive finite amount"),
    "cash nan": (lambda t: ["--cash", "nan"], "cash must be a positive finite amount, got nan"),
    "commission inf": (lambda t: ["--commission", "inf"], "commission must be a fraction"),
    "commission nan": (lambda t: ["--commission", "nan"], "commission must be a fraction"),
    "out is a file": (lambda t: ["--out", write(t, "f.txt", "mine")], "is a file, not a folder"),
    "out under a file": (lambda t: ["--out", str(Path(write(t, "f.txt", "mine")) / "run")],
                         "f.txt is a file, not a folder"),
    "out deep under a file": (lambda t: ["--out", str(Path(write(t, "f.txt", "mine")) / "a" / "b")],
                              "f.txt is a file, not a folder"),
    "out read-only": (lambda t: ["--out", str(_read_only_folder(t) / "run")], "cannot be written"),
    "out user folder, overwrite": (lambda t: ["--out", _user_folder(t), "--overwrite"],
                                   "holds files that are not a previous run (notes.txt)"),
    "out user summary.json, overwrite": (lambda t: ["--out", _user_folder(t, "summary.json"), "--overwrite"],
                                         "holds files that are not a previous run"),
    "out is the current folder, overwrite": (lambda t: ["--out", ".", "--overwrite"], "is the current folder"),
    "out holds the current folder": (lambda t: ["--out", "..", "--overwrite"], "is the current folder or holds it"),
}


def _user_folder(tmp_path, name="notes.txt"):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_text('{"mine": true}')
    return str(folder)


@pytest.mark.parametrize("case", sorted(WRITE_TIME))
def test_write_time_checks_fail_before_the_run_and_touch_nothing(case, tmp_path, capsys, monkeypatch, no_run):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    make_args, expected = WRITE_TIME[case]
    args = make_args(tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli(RUN + args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert _snapshot(tmp_path) == before  # nothing written, nothing deleted, no partial folder


def test_overwrite_replaces_a_previous_run_and_leaves_nothing_else(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(RUN + ["--out", str(out)]) == 0
    first = (out / "summary.json").read_text()
    with pytest.raises(SystemExit) as exc:  # without --overwrite a previous run is kept
        cli(RUN + ["--out", str(out)])
    assert exc.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    assert cli(RUN + ["--cash", "50000", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["cash"] == 50000
    assert (out / "summary.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no stage, no old copy, no probe


def test_a_user_file_in_a_previous_run_is_never_deleted(tmp_path, capsys, no_run):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"params": {}, "config": {}, "benchmark": {}}))
    (out / "analysis.ipynb").write_text("my notes")
    with pytest.raises(SystemExit) as exc:
        cli(RUN + ["--out", str(out), "--overwrite"])
    assert exc.value.code == 2 and "not a previous run (analysis.ipynb)" in capsys.readouterr().err
    assert (out / "analysis.ipynb").read_text() == "my notes"


def test_files_that_appear_during_the_run_are_not_deleted(tmp_path, capsys, monkeypatch):
    import backtests.run as run

    out = tmp_path / "run"
    real = run.run_backtest

    def run_then_user_writes(*args, **kwargs):
        result = real(*args, **kwargs)
        out.mkdir()
        (out / "draft.txt").write_text("written while the run was going")
        return result

    monkeypatch.setattr(run, "run_backtest", run_then_user_writes)
    with pytest.raises(SystemExit) as exc:
        cli(RUN + ["--out", str(out), "--overwrite"])
    assert exc.value.code == 2 and "not a previous run (draft.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["draft.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failed_final_rename_restores_the_previous_run(tmp_path, monkeypatch):
    import backtests.outputs as outputs

    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"params": {}, "config": {}, "benchmark": {}, "old": True}))
    real = os.replace

    def replace(src, dst):
        if ".partial-" in str(src):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(OSError):
        with outputs.staged_dir(out, overwrite=True) as stage:
            (stage / "summary.json").write_text("{}")
    assert json.loads((out / "summary.json").read_text())["old"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_price_data_refuses_infinite_prices_and_columns_equal_but_for_case():
    import pandas as pd

    from marketdata import DataError, PriceData

    dates = pd.to_datetime(["2022-01-03", "2022-01-04"])
    with pytest.raises(DataError, match="non-finite close price inf for B on 2022-01-04"):
        PriceData.from_closes(pd.DataFrame({"A": [1.0, 2.0], "B": [1.0, float("inf")]}, index=dates), source="t")
    with pytest.raises(DataError, match="duplicated column AAPL"):
        PriceData.from_closes(pd.DataFrame([[1.0, 2.0]] * 2, index=dates, columns=["AAPL", "aapl "]), source="t")


DATE_LAYOUTS = {"%d/%m/%Y": "03/01/2022", "%Y%m%d": "20220103", "%m/%d/%Y": "01/03/2022"}


@pytest.mark.parametrize("layout", sorted(DATE_LAYOUTS))
def test_a_date_format_reads_the_same_run_as_iso_dates(layout, tmp_path, capsys):
    from marketdata import load_sample

    closes = load_sample().closes.loc["2022-06-01":"2022-12-28", ["AAPL", "KO", "PG"]]
    iso, other = tmp_path / "iso.csv", tmp_path / "other.csv"
    closes.to_csv(iso, index_label="date")
    relabelled = closes.copy()
    relabelled.index = closes.index.strftime(layout)
    relabelled.to_csv(other, index_label="date")
    with pytest.raises(SystemExit) as refused:  # without the format: refused, never guessed
        cli(BASE + ["--data", str(other), "--start", "2022-09-01", "--out", str(tmp_path / "x")])
    assert refused.value.code == 2 and "is not ISO 8601" in capsys.readouterr().err
    runs = {}
    for name, extra in (("iso", ["--data", str(iso)]), ("other", ["--data", str(other), "--date-format", layout])):
        assert cli(BASE + extra + ["--start", "2022-09-01", "--out", str(tmp_path / name)]) == 0
        runs[name] = (tmp_path / name / "trades.csv").read_bytes(), (tmp_path / name / "equity.csv").read_bytes()
    assert runs["iso"] == runs["other"] and runs["iso"][0].count(b"\n") > 1
    again = tmp_path / "again"  # the format is part of the run's config: --config reads the file the same way
    assert cli(["--quiet", "--no-plot", "--config", str(tmp_path / "other" / "config.toml"), "--out", str(again)]) == 0
    assert (again / "trades.csv").read_bytes() == runs["other"][0]


def test_the_sweep_reads_a_date_format_too(tmp_path, capsys):
    from backtests.sweep import cli as sweep
    from marketdata import load_sample

    closes = load_sample().closes.loc["2022-01-03":"2022-12-28", ["AAPL", "KO"]]
    closes.index = closes.index.strftime("%d/%m/%Y")
    path = tmp_path / "dmy.csv"
    closes.to_csv(path, index_label="date")
    common = ["--data", str(path), "--grid", "band=0.01", "--set", "history=30", "--set", "refit_every=10",
              "--set", "top_n=1", "--start", "2022-06-01", "--train", "40", "--test", "20"]
    with pytest.raises(SystemExit) as exc:
        sweep(common + ["--out", str(tmp_path / "refused")])
    assert exc.value.code == 2 and "line 2 of" in capsys.readouterr().err
    assert sweep(common + ["--date-format", "%d/%m/%Y", "--out", str(tmp_path / "swept")]) == 0
    assert (tmp_path / "swept" / "results.csv").is_file()
