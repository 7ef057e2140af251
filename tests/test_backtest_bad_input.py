"""Bad input: a one-line `error: ...` on stderr, exit code 2, no traceback, and no output folder left behind."""

import subprocess
import sys

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
    "unknown symbol": (lambda t: ["--symbols", "AAPL,NOPE"], "unknown symbol(s) NOPE"),
    "start after end": (lambda t: ["--start", "2022-06-01", "--end", "2022-01-01"], "start 2022-06-01 is after end"),
    "empty window": (lambda t: ["--start", "2024-01-01", "--end", "2024-02-01"], "no bars between"),
    "too few bars for history": (lambda t: ["--start", "1990-02-01", "--end", "1990-06-01"], "too few bars before"),
    "bad date": (lambda t: ["--start", "yesterday-ish"], "is not a date"),
    "bad number": (lambda t: ["--cash", "lots"], "invalid float value"),
    "bad parameter": (lambda t: ["--band", "-1"], "band must be"),
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
