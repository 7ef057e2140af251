"""The exact engine on several processes: each call's jobs shared out as they go, warm starts carried with them.

A fit of the exact engine is a pure function of its job and of the warm start it begins from (the previous fit
of the same series). This pool keeps every warm start in the calling process and sends it along with the job,
and takes back the new one, so whichever process fits a job starts it from exactly the state a single process
would have used: the forecasts are the same numbers, bit for bit, for any number of workers (the tests compare
1 and 2 workers on a whole backtest). Each process claims the next job of a call until none is left, rather than
symbols being pinned to processes, so both cores stay busy at every slot even when one is slowed by other work.

Example:
    >>> import numpy as np, pandas as pd
    >>> ds = pd.bdate_range("2021-01-04", periods=60)
    >>> jobs = [ForecastJob(k, ds, np.linspace(10, 20 + i, 60), pd.bdate_range("2021-04-01", periods=2))
    ...         for i, k in enumerate("ABCD")]
    >>> with ExactPool(ProphetSettings(), workers=2) as pool:
    ...     pooled = pool.fit_predict_many(jobs)
    >>> single = ExactEngine(ProphetSettings()).fit_predict_many(jobs)
    >>> all((a.yhat == b.yhat).all() for a, b in zip(pooled, single))
    True
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection

from strategies.engines.base import Forecast, ForecastJob, ProphetSettings
from strategies.engines.exact import ExactEngine


def _serve(conn: Connection, settings: ProphetSettings, counter) -> None:
    """Worker loop: for each batch ``[(job, warm start or None)]``, claim jobs from the shared ``counter`` (the
    caller claims from it too) and answer ``{position: (forecast, new warm start)}`` for the ones it fitted."""
    engine = ExactEngine(settings)
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is None:
            return
        try:
            done = {}
            while (i := _claim(counter, len(batch))) is not None:
                done[i] = engine.fit_with_warm_starts([batch[i]])[0]
            conn.send(done)
        except BaseException as exc:  # handed back and raised in the caller, which owns the run
            conn.send(exc)


def _claim(counter, n: int) -> int | None:
    """The next unclaimed job position of the current batch, or None when all are taken."""
    with counter.get_lock():
        i = counter.value
        if i >= n:
            return None
        counter.value = i + 1
        return i


class ExactPool:
    """:class:`ExactEngine` over ``workers`` processes (the caller's own plus ``workers - 1`` forked ones).

    Same interface and the same forecasts as ``ExactEngine``; ``workers=1`` is the plain engine in-process. Close
    it (or use it as a context manager) to stop the workers; they also stop when the caller exits.
    """

    name = "exact"

    def __init__(self, settings: ProphetSettings, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.settings = settings
        self.workers = workers
        self.local = ExactEngine(settings)
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        # A daemonic process (a Dask worker, say) may not start processes: it fits in-process, the same numbers.
        if workers > 1 and not mp.current_process().daemon:
            # fork: the worker inherits the loaded modules (no second import of pandas); spawn where there is none
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self._counter = ctx.Value("l", 0)
            for _ in range(workers - 1):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, settings, self._counter), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)

    @property
    def unsupported(self) -> str | None:
        return self.local.unsupported

    def fit_predict_many(self, jobs: list[ForecastJob]) -> list[Forecast]:
        if not self._conns or len(jobs) < 2 or len({job.key for job in jobs}) < len(jobs):
            # (a series twice in one call warms its second fit from its first: only one process can do that)
            return self.local.fit_predict_many(jobs)
        warm = self.local._warm
        batch = [(job, warm.get(job.key)) for job in jobs]
        with self._counter.get_lock():
            self._counter.value = 0
        for conn in self._conns:
            conn.send(batch)
        results: list[Forecast | None] = [None] * len(jobs)
        # Every process claims the next job until none is left: a busy core takes fewer (the machine is shared).
        while (i := _claim(self._counter, len(jobs))) is not None:
            results[i] = self.local.fit_predict_many([jobs[i]])[0]
        failure = None
        for conn in self._conns:
            answer = conn.recv()
            if isinstance(answer, BaseException):
                failure = failure or answer
                continue
            for i, (forecast, state) in answer.items():
                results[i] = forecast
                if state is not None:
                    warm[jobs[i].key] = state
        if failure is not None:
            raise failure
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        for conn in self._conns:
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> "ExactPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["ExactPool", "ExactEngine", "ForecastJob", "ProphetSettings"]
