"""Run in a fresh process by ``bench_live``: import the Lambda entry, then replay cycles in-process, as a warm
Lambda container would, and print the timings as one JSON line. Imports only what ``PYTHONPATH`` points at (the
base release or this tree), so the same file times both.

    PYTHONPATH=. python benchmarks/_live_cycles.py 2022-06-01 2022-06-02 2022-06-03
"""

import json
import os
import sys
import time

t0 = time.perf_counter()
import lambda_function  # noqa: E402,F401  (the handler's imports: what a cold container pays)
from live.cycle import run  # noqa: E402

imported = time.perf_counter() - t0
cycles = []
for day in sys.argv[1:]:
    t = time.perf_counter()
    summary = run({"now": f"{day}T15:45:00-04:00"}, env=dict(os.environ))
    seconds = time.perf_counter() - t
    orders = sorted([o.get("symbol"), o.get("side"), o.get("qty")] for o in summary.get("orders") or [])
    cycles.append({"day": day, "status": summary["status"], "orders": orders, "seconds": seconds})
print(json.dumps({"import_s": imported, "cycles": cycles}))
