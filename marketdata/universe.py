"""The S&P 500 candidate list: a bundled, dated snapshot and an optional refresh from the public table.

The snapshot lists today's members (as of its ``snapshot_date``). Backtesting the past on today's members has
**survivorship bias**: companies that fell out of the index (or went bankrupt) are missing, and those that joined
after rising are present, so results look better than a trader of the time could have done. The snapshot date is
therefore carried into every result that uses it.

``refresh_sp500()`` downloads Wikipedia's "List of S&P 500 companies" table (``pandas.read_html``) and writes it to
the cache folder, where :func:`load_sp500` then prefers it over the bundled file.

Example:
    >>> universe = load_sp500(prefer_refreshed=False)
    >>> universe.snapshot_date, len(universe.symbols) > 490, "AAPL" in universe.symbols
    ('2026-03-09', True, True)
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from marketdata.cache import default_cache_dir
from marketdata.errors import DataError

WIKIPEDIA_URL = "https://en.wikipedia.org/wiki/List_of_S%26P_500_companies"
BUNDLED_NAME = "sp500_constituents.csv"
REFRESHED_NAME = "sp500_constituents.csv"
SURVIVORSHIP_NOTE = (
    "survivorship bias: the universe is the S&P 500 membership as of {date}, applied to every past date; "
    "companies that left the index before then are missing, so past returns are overstated"
)


@dataclass(frozen=True)
class Universe:
    """Candidate symbols with name and sector, and where the list came from and when."""

    table: pd.DataFrame  # columns: symbol, name, sector
    snapshot_date: str
    source: str
    path: str

    @property
    def symbols(self) -> list[str]:
        return self.table["symbol"].tolist()

    @property
    def survivorship_note(self) -> str:
        return SURVIVORSHIP_NOTE.format(date=self.snapshot_date)

    def provenance(self) -> dict[str, str]:
        return {"universe": "S&P 500", "universe_snapshot_date": self.snapshot_date,
                "universe_source": self.source, "survivorship_note": self.survivorship_note}


def refreshed_path(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "universe" / REFRESHED_NAME


def load_sp500(path: str | Path | None = None, *, cache_dir: str | Path | None = None,
               prefer_refreshed: bool = True) -> Universe:
    """The snapshot at ``path``; else a refreshed copy in the cache folder if any; else the bundled one."""
    if path is None and prefer_refreshed and refreshed_path(cache_dir).is_file():
        path = refreshed_path(cache_dir)
    if path is None:
        text = resources.files("marketdata").joinpath("data", BUNDLED_NAME).read_text(encoding="utf-8")
        return parse_snapshot(text, origin=f"bundled {BUNDLED_NAME}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read universe file {path}: {exc.strerror or exc}") from None
    return parse_snapshot(text, origin=str(path))


def parse_snapshot(text: str, *, origin: str) -> Universe:
    """Read ``# key: value`` header lines, then ``symbol,name,sector`` rows.

    Example:
        >>> u = parse_snapshot("# snapshot_date: 2024-05-01\\n# source: test\\nsymbol,name,sector\\nKO,Coca-Cola,Consumer Staples\\n",
        ...                    origin="example")
        >>> u.symbols, u.snapshot_date
        (['KO'], '2024-05-01')
    """
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep:
            header[key.strip().lower()] = value.strip()
    try:
        table = pd.read_csv(io.StringIO(text), comment="#", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot parse universe file {origin}: {str(exc).splitlines()[0]}") from None
    missing = {"symbol", "name", "sector"} - set(table.columns)
    if missing:
        raise DataError(f"universe file {origin} lacks column(s) {', '.join(sorted(missing))}")
    if "snapshot_date" not in header:
        raise DataError(f"universe file {origin} has no '# snapshot_date: YYYY-MM-DD' header line")
    table = table[["symbol", "name", "sector"]].assign(symbol=lambda t: t["symbol"].str.strip().str.upper())
    table = table[table["symbol"] != ""].drop_duplicates("symbol").reset_index(drop=True)
    if table.empty:
        raise DataError(f"universe file {origin} lists no symbols")
    return Universe(table=table, snapshot_date=header["snapshot_date"], source=header.get("source", origin), path=origin)


def table_from_html(html: str) -> pd.DataFrame:
    """The constituents table of Wikipedia's page as ``symbol, name, sector``.

    Example:
        >>> html = ("<table id='constituents'><tr><th>Symbol</th><th>Security</th><th>GICS Sector</th></tr>"
        ...         "<tr><td>BRK.B</td><td>Berkshire Hathaway</td><td>Financials</td></tr></table>")
        >>> table_from_html(html).to_dict("records")
        [{'symbol': 'BRK.B', 'name': 'Berkshire Hathaway', 'sector': 'Financials'}]
    """
    try:
        tables = pd.read_html(io.StringIO(html), attrs={"id": "constituents"})
    except ValueError:
        tables = [t for t in _all_tables(html) if {"Symbol", "Security"} <= set(map(str, t.columns))]
    if not tables:
        raise DataError("the page has no S&P 500 constituents table (expected columns Symbol, Security, GICS Sector)")
    raw = tables[0]
    columns = {str(c).strip(): c for c in raw.columns}
    if not {"Symbol", "Security"} <= set(columns):
        raise DataError("the constituents table lacks the Symbol or Security column")
    sector = columns.get("GICS Sector")
    table = pd.DataFrame({
        "symbol": raw[columns["Symbol"]].astype(str).str.strip().str.upper(),
        "name": raw[columns["Security"]].astype(str).str.strip(),
        "sector": raw[sector].astype(str).str.strip() if sector is not None else "",
    })
    return table.sort_values("symbol").reset_index(drop=True)


def _all_tables(html: str) -> list[pd.DataFrame]:
    try:
        return pd.read_html(io.StringIO(html))
    except ValueError:
        return []


def refresh_sp500(*, url: str = WIKIPEDIA_URL, dest: str | Path | None = None, timeout: float = 30.0,
                  today: dt.date | None = None) -> Universe:
    """Download the constituents table and write it (atomically) as the refreshed snapshot; returns it.

    Network failures raise :class:`DataError`; the previous snapshot is left untouched.
    """
    import requests

    try:
        response = requests.get(url, timeout=timeout, headers={"User-Agent": "prophettrend (S&P 500 universe refresh)"})
        response.raise_for_status()
    except requests.RequestException as exc:
        if isinstance(exc, requests.ConnectionError):
            reason = "no connection: the host could not be reached"
        else:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"cannot download the S&P 500 table from {url} ({reason}); the previous snapshot is still used") from None
    table = table_from_html(response.text)
    if len(table) < 400 and url == WIKIPEDIA_URL:
        raise DataError(f"the S&P 500 table at {url} has only {len(table)} rows; not replacing the snapshot")
    date = (today or dt.date.today()).isoformat()
    out = io.StringIO()
    out.write("# S&P 500 constituents snapshot (symbol, name, GICS sector)\n")
    out.write(f"# snapshot_date: {date}\n")
    out.write(f"# source: {url} (pandas.read_html), downloaded {date}\n")
    out.write("# warning: today's members applied to the past overstate returns (survivorship bias)\n")
    table.to_csv(out, index=False, lineterminator="\n")
    path = Path(dest) if dest is not None else refreshed_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(out.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return parse_snapshot(out.getvalue(), origin=str(path))
