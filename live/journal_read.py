"""Reading the journal back: the cycle records of a JSON-lines file or of ``s3://bucket/prefix``, for the report.

A record that cannot be read (torn JSON, not an object, no ``cycle_id``) is counted and named in
:attr:`JournalRead.unreadable`, and the rest is still read. Only a journal with no readable record at all (empty,
truncated to nothing, foreign) is a :class:`JournalError`. Fields are read defensively (the record grows: new
statuses, ``fates``, metric lines): anything missing reads as absent, never as an error. The fields the report
uses are listed in docs/reports.md ("Live report").

S3 layout (``live.journal.S3Journal``): ``prefix/YYYY-MM-DD/<cycle id>.json`` and ``prefix/undated/...``; the
daybook's ``prefix/decisions/`` marks are not cycles and are left alone.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "journal.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"cycle_id": "c1", "status": "traded", "now": "2022-06-01T15:45:00-04:00",
    ...                             "trading_date": "2022-06-01"}) + "\\n" + '{"cycle_id": "c2", "sta')
    >>> read = read_journal(path)
    >>> [r["cycle_id"] for r in read.records], read.unreadable[0].where, read.unreadable[0].why
    (['c1'], 'line 2', 'truncated or malformed JSON')
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY_FOLDER = re.compile(r"^(\d{4}-\d{2}-\d{2}|undated)/[^/]+\.json$")


class JournalError(ValueError):
    """Nothing to report on: no journal, an empty or foreign one, or no cycle after ``--since``."""


@dataclass(frozen=True)
class Unreadable:
    where: str  # "line 7" or an S3 key
    why: str


@dataclass
class JournalRead:
    source: str
    records: list[dict[str, Any]] = field(default_factory=list)  # oldest first, one per cycle id
    unreadable: list[Unreadable] = field(default_factory=list)


def read_journal(spec: str, *, since: dt.date | None = None, s3_client=None) -> JournalRead:
    """The cycle records of ``spec`` (a JSON-lines path or ``s3://bucket/prefix``) on or after ``since``."""
    read = _read_s3(spec, since, s3_client) if spec.startswith("s3://") else _read_local(Path(spec))
    if not read.records:
        what = f"; {len(read.unreadable)} unreadable ({read.unreadable[0].where}: {read.unreadable[0].why})" \
            if read.unreadable else ""
        raise JournalError(f"no cycle records in {spec}{what}")
    read.records = _dedupe(sorted(read.records, key=moment))
    if since is not None:
        last = trading_date(read.records[-1])
        read.records = [r for r in read.records if (trading_date(r) or dt.date.min) >= since]
        if not read.records:
            raise JournalError(f"--since {since} is after the journal's last cycle ({last})")
    return read


def _record(text: str, where: str, read: JournalRead) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        read.unreadable.append(Unreadable(where, "truncated or malformed JSON"))
        return
    if not isinstance(value, dict) or not isinstance(value.get("cycle_id"), str) or "status" not in value:
        read.unreadable.append(Unreadable(where, "not a cycle record (no cycle_id and status)"))
        return
    read.records.append(value)


def _read_local(path: Path) -> JournalRead:
    if path.is_dir():
        raise JournalError(f"{path} is a folder; give the journal file (e.g. {path / 'journal.jsonl'})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"no journal at {path}") from None
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from None
    read = JournalRead(str(path))
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            read.unreadable.append(Unreadable(f"line {number}", "not UTF-8 text"))
            continue
        _record(text, f"line {number}", read)
    return read


def _read_s3(url: str, since: dt.date | None, client) -> JournalRead:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise JournalError(f"{url} names no bucket (use s3://bucket/prefix)")
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    if client is None:
        import boto3

        client = boto3.client("s3")
    read = JournalRead(url)
    try:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
                for o in page.get("Contents", [])]
        for key in sorted(keys):
            rest = key[len(base):]
            if not DAY_FOLDER.match(rest):
                continue  # the daybook's decisions/ marks, or someone else's files
            folder = rest.split("/", 1)[0]
            if since is not None and folder != "undated" and folder < since.isoformat():
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            _record(body.decode("utf-8", errors="replace"), key, read)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise JournalError(f"{url}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise JournalError(f"{url}: {exc}") from None
    if not read.records and not read.unreadable:
        raise JournalError(f"no cycles under {url}" + (f" on or after {since}" if since else ""))
    return read


def _dedupe(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        if r["cycle_id"] not in seen:
            seen.add(r["cycle_id"])
            out.append(r)
    return out


# ---------------------------------------------------------------- defensive field access

def get(record: dict, *path: str, default: Any = None) -> Any:
    """``record[path[0]][path[1]]...``, or ``default`` where any step is missing or not a mapping.

    >>> get({"inputs": {"account": {"equity": 5.0}}}, "inputs", "account", "equity"), get({}, "inputs", "x", default=0)
    (5.0, 0)
    """
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def moment(record: dict) -> dt.datetime:
    """The cycle's time (UTC); a record without a readable ``now`` sorts first."""
    try:
        t = dt.datetime.fromisoformat(str(record.get("now")))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def trading_date(record: dict) -> dt.date | None:
    for text in (record.get("trading_date"), str(record.get("now") or "")[:10]):
        try:
            return dt.date.fromisoformat(str(text))
        except ValueError:
            continue
    return None


def orders(record: dict) -> list[dict]:
    """The record's orders that are mappings with a symbol and a side."""
    return [o for o in record.get("orders") or [] if isinstance(o, dict) and o.get("symbol") and o.get("side")]


def error_text(record: dict) -> str | None:
    error = record.get("error")
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("type", "message") if error.get(k))
    return str(error) if error else None


def filled_qty(order: dict) -> float:
    try:
        return float(order.get("filled_qty") or 0)
    except (TypeError, ValueError):
        return 0.0


# ---------------------------------------------------------------- decisions and fills, for the drift

def decision_key(record: dict) -> Any:
    """What one decision is keyed by, as the daybook keys it: the trading date (daily cadence) or, intraday, the
    slot's New York moment (naive ``pd.Timestamp``), the latest slot at or before the cycle's moment.

    >>> decision_key({"trading_date": "2022-06-01", "now": "2022-06-01T15:45:00-04:00"})
    datetime.date(2022, 6, 1)
    >>> decision_key({"trading_date": "2022-06-01", "now": "2022-06-01T10:07:00-04:00",
    ...               "inputs": {"config": {"strategy": {"cadence": "15min"}}}})
    Timestamp('2022-06-01 10:00:00')
    """
    import pandas as pd

    cadence_text = str(get(record, "inputs", "config", "strategy", "cadence", default="daily"))
    day = trading_date(record)
    if cadence_text.strip().lower() == "daily" or day is None:
        return day
    from live.schedule import current_slot
    from strategies.cadence import Cadence

    session = _calendar().session(day)
    if session is None:  # intraday keys are always Timestamps, so that they compare: a closed day is its midnight
        return pd.Timestamp(day)
    config = get(record, "inputs", "config", default={})
    try:
        cadence = Cadence.parse(cadence_text)
        minutes = (int(config.get("trade_after_open_minutes", 15)), int(config.get("trade_before_close_minutes", 5)))
    except (TypeError, ValueError):  # a record of another version: keyed by its day
        return pd.Timestamp(day)
    slot = current_slot(moment(record), session, cadence, *minutes)
    return pd.Timestamp(day) if slot is None else pd.Timestamp(slot.replace(tzinfo=None))


@functools.lru_cache(maxsize=1)
def _calendar():
    from brokers.calendar import MarketCalendar

    return MarketCalendar()


@dataclass(frozen=True)
class LiveFill:
    """What the broker filled of one of our orders, summed over the cycles that saw it."""

    key: Any               # the decision that sent it (decision_key of its cycle)
    symbol: str
    side: str
    qty: float
    price: float           # the average fill price
    fee: float             # as the broker recorded it on the order, else the cycle's costs model's estimate
    client_order_id: str
    fill_date: dt.date | None  # the trading date of the cycle that saw the (last) fill
    cycle_id: str = ""     # the cycle that sent the order (for an exit leg: the cycle that saw it fill)
    leg: bool = False      # known only from the ledger's fills (an exit leg): it filled before that cycle read


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None


def execution_of(record: dict):
    """The execution model (``strategies.execution.Execution``) the cycle of ``record`` ran with: the one its config
    recorded (``inputs.config.execution``). A record written before the cycles recorded it is read as what ran
    then: the paper broker filled at the decision bar's close with ``paper_commission`` only (no slippage, no
    regulatory fees); at Alpaca, the config's ``[backtest]`` table (Alpaca's costs by default).

    >>> execution_of({"inputs": {"config": {"broker": "paper", "paper_commission": 0.001}}}).costs
    Costs(commission=0.001, slippage_bps=0.0, regulatory='none')
    >>> execution_of({"inputs": {"config": {"execution": {"fill": "decision", "commission": 0.0,
    ...                                                   "slippage_bps": 2.0, "costs": "alpaca"}}}}).costs
    Costs(commission=0.0, slippage_bps=2.0, regulatory='alpaca')
    """
    from strategies.execution import Costs, Execution

    config = get(record, "inputs", "config", default={})
    recorded = config.get("execution") if isinstance(config, dict) else None
    if isinstance(recorded, dict):
        if recorded.get("error"):  # that cycle could not read its model, and so traded nothing
            raise ValueError(str(recorded["error"]))
        return Execution.from_mapping(recorded)
    commission = float(_number(config.get("paper_commission")) or 0.0) if isinstance(config, dict) else 0.0
    if config.get("broker") == "paper":
        return Execution(costs=Costs(commission=commission, slippage_bps=0.0, regulatory="none"))
    return Execution.from_mapping(get(record, "inputs", "config", "strategy", "backtest", default={}) or {})


def _fee(order: dict, record: dict, qty: float, price: float, side: str) -> float:
    """The fee the broker recorded on the order (or the ledger's fill); else the record's costs model's estimate
    (an exit leg or a fill a later cycle saw: the ledger does not carry the fee)."""
    for name in ("fee", "fees", "commission"):
        value = _number(order.get(name))
        if value is not None:
            return value
    try:
        model = execution_of(record)
    except (TypeError, ValueError):  # a record of another version: no estimate rather than a guess
        return 0.0
    day = trading_date(record) or dt.date.today()
    return model.costs.fees(side, qty, price, day)


def live_fills(records: list[dict], ours=None) -> list[LiveFill]:
    """Every fill of our orders in ``records`` (oldest first), one per client order id: from the orders each cycle
    sent or found (``orders``) and from the fills the ledger took in (``ledger.new_fills``, which also sees a fill
    that arrived after its cycle, and exit legs). An order that several cycles report (a retry that found it at
    the broker) counts once, at its largest filled quantity. ``ours(client_order_id)`` leaves out foreign ids.

    >>> r = {"trading_date": "2022-06-01", "orders": [{"symbol": "KO", "side": "buy", "qty": 5, "filled_qty": 5,
    ...       "filled_avg_price": 60.0, "client_order_id": "x-20220601-KO-buy"}]}
    >>> [(f.symbol, f.qty, f.price) for f in live_fills([r, r])]
    [('KO', 5.0, 60.0)]
    """
    origin: dict[str, tuple[Any, str, bool]] = {}
    # an exit leg's id is the broker's, not ours: leave out only the ledger's fills of orders seen to be foreign
    foreign = {str(o.get("client_order_id")) for r in records for o in orders(r)
               if ours is not None and not ours(str(o.get("client_order_id") or ""))}
    best: dict[str, dict] = {}
    sent: dict[str, Any] = {}  # the trading date each order was sent on
    increments: dict[str, dict] = {}
    for r in records:
        key, day = decision_key(r), trading_date(r)
        for o in orders(r):
            cid = str(o.get("client_order_id") or "")
            if not cid or (ours is not None and not ours(cid)):
                continue
            origin.setdefault(cid, (key, str(r.get("cycle_id")), False))
            sent.setdefault(cid, day)
            qty, price = filled_qty(o), _number(o.get("filled_avg_price"))
            if qty > 0 and price is not None and qty >= best.get(cid, {}).get("qty", 0):
                best[cid] = {"symbol": o["symbol"], "side": o["side"], "qty": qty, "price": price, "day": sent[cid],
                             "fee": _fee(o, r, qty, price, str(o["side"]))}
        for f in get(r, "ledger", "new_fills", default=[]) or []:
            if not isinstance(f, dict) or not f.get("client_order_id") or not f.get("symbol"):
                continue
            cid = str(f["client_order_id"])
            if cid in foreign:
                continue
            qty, price = _number(f.get("qty")) or 0.0, _number(f.get("price"))
            if qty <= 0 or price is None:
                continue
            origin.setdefault(cid, (key, str(r.get("cycle_id")), True))  # an exit leg: keyed by the cycle that saw it
            got = increments.setdefault(cid, {"symbol": f["symbol"], "side": f.get("side"), "qty": 0.0})
            # a market order fills at its decision moment, however late a cycle saw it; a leg when it was seen
            got.update(qty=got["qty"] + qty, price=price, day=day if origin[cid][2] else sent.get(cid, day))
            got["fee"] = _fee(f, r, got["qty"], price, str(got["side"]))
    out = []
    for cid in origin:
        a, b = best.get(cid), increments.get(cid)
        pick = a if b is None or (a is not None and a["qty"] >= b["qty"]) else b
        if pick is None:
            continue
        key, cycle, leg = origin[cid]
        out.append(LiveFill(key, pick["symbol"], str(pick["side"]), pick["qty"], pick["price"], pick["fee"], cid,
                            pick["day"], cycle, leg))
    return out
