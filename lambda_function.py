"""AWS Lambda entry point: one invocation is one trading cycle (``live.cycle.run``).

Locally: ``python lambda_function.py --now 2022-06-01T15:45:00-04:00`` replays that moment on the paper broker
with the bundled sample and prints the summary (``--help`` for more).
"""

from __future__ import annotations

import sys
from typing import Any

from live.cycle import run

__all__ = ["lambda_handler", "run"]


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: ``event`` may carry ``now`` (a replayed moment) and ``dry_run``."""
    return run(event)


if __name__ == "__main__":
    from live.cli import main

    sys.exit(main(sys.argv[1:]))
