"""Replayed cycles for the live report: ``live.cycle.run`` at 15:45 on the paper broker over a window of the bundled
sample, optionally with one order refused by the broker (an injected event), written to a JSON-lines journal.

``python tests/_replay_journal.py`` regenerates the bundled sample, ``notebooks/data/sample_journal.jsonl`` (a replay,
not a record of real trading).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _live_env import live_env  # noqa: E402
from brokers.base import OrderRefused  # noqa: E402
from brokers.calendar import MarketCalendar  # noqa: E402
from brokers.paper import PaperBroker  # noqa: E402

FIRST, LAST = dt.date(2022, 6, 1), dt.date(2022, 6, 29)  # 20 sessions; Juneteenth (observed June 20) inside
REFUSAL = "asset is not tradable (injected by the replay)"
SAMPLE = ROOT / "notebooks" / "data" / "sample_journal.jsonl"


@contextlib.contextmanager
def refusing(client_order_id: str | None) -> Iterator[None]:
    """The paper broker refuses the order with this client id, as Alpaca refuses an untradable asset."""
    original = PaperBroker.submit

    def submit(self, request):
        if request.client_order_id == client_order_id:
            raise OrderRefused(f"{request.symbol}: {REFUSAL}")
        return original(self, request)

    PaperBroker.submit = submit
    try:
        yield
    finally:
        PaperBroker.submit = original


def sessions(first: dt.date = FIRST, last: dt.date = LAST) -> list[dt.date]:
    return [s.date for s in MarketCalendar().sessions(first, last)]


def replay(state_dir: Path, days: list[dt.date], refuse: str | None = None, *, extras: bool = False,
           **overrides: str) -> Path:
    """Run a cycle at 15:45 New York on each day; returns the journal file. ``extras`` adds a morning cycle (no
    decision yet) on the first day and one on the holiday inside the window (market closed)."""
    from live.cycle import run

    env = live_env(state_dir, **overrides)
    moments = [f"{day}T15:45:00-04:00" for day in days]
    if extras:  # string order is time order here: one offset, ISO dates
        moments = sorted([*moments, f"{days[0]}T10:15:00-04:00"]
                         + [f"{d}T12:00:00-04:00" for d in ("2022-06-20",) if days[0].isoformat() < d < days[-1].isoformat()])
    with refusing(refuse):
        for moment in moments:
            run({"now": moment}, env=env)
    return Path(env["STATE_DIR"]) / "journal.jsonl"


def trades(journal: Path) -> list[tuple[str, str, str, str]]:
    import json

    out = []
    for line in journal.read_text().splitlines():
        r = json.loads(line)
        out += [(r["trading_date"], o["symbol"], o["side"], o["status"]) for o in r["orders"]]
    return out


if __name__ == "__main__":
    import tempfile

    state = Path(tempfile.mkdtemp(prefix="replay-"))
    refuse = sys.argv[1] if len(sys.argv) > 1 else None
    path = replay(state, sessions(), refuse, extras=True)
    if "--print" in sys.argv:
        print("\n".join(map(str, trades(path))))
    else:
        SAMPLE.parent.mkdir(parents=True, exist_ok=True)
        # the replay's temporary folder is no one's path: name it as the default state folder
        SAMPLE.write_text(path.read_text().replace(str(state), "live_state"))
        print(f"wrote {SAMPLE} ({len(path.read_text().splitlines())} cycles)")
