"""Where sweep cells run: in this process, on local processes, or on a Dask distributed cluster.

Every executor takes the same self-contained tasks (a function and its argument, both picklable) and yields
``(task, result)`` pairs as they finish, so the caller can save each result at once. The work a task does does
not depend on where it runs, so results are identical whichever executor ran them.

Example:
    >>> with make_executor("local", workers=1) as ex:
    ...     sorted(result for _, result in ex.run(abs, [-2, 1, -3]))
    [1, 2, 3]
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import zipfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

from clitools import UserError

_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("backtests", "strategies", "marketdata", "clitools")  # what a cell's task imports from this project

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    description: str

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Yield ``(task, fn(task))`` in completion order; an exception in a task is raised here."""
        ...

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc: Any) -> None: ...


class InlineExecutor:
    """Runs tasks one after the other in this process (``--workers 1``): no start-up cost, easy to debug."""

    description = "1 worker (this process)"

    def run(self, fn, tasks):
        for task in tasks:
            yield task, fn(task)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class ProcessExecutor:
    """A pool of ``workers`` local processes (started through a fork server, safe with threads in the parent)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.description = f"{workers} local processes"
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":
            # Workers fork from a server that already imported the backtest stack and Prophet, so each starts in
            # milliseconds instead of importing them again (a module that fails to import is skipped).
            # (strategies.engines.stan first: it silences Prophet's import-time complaint about plotly)
            context.set_forkserver_preload(["backtests.cells", "strategies.engines.stan", "prophet"])
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self

    def run(self, fn, tasks):
        assert self._pool is not None, "use ProcessExecutor as a context manager"
        pending: dict[Future, Any] = {self._pool.submit(fn, task): task for task in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                yield task, future.result()

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Runs tasks on a Dask distributed cluster at ``scheduler``, or on a new LocalCluster of ``workers`` processes.

    On a remote cluster this project's own packages are uploaded to the scheduler and the workers first (a zip
    through ``Client.upload_file``), so they run exactly the code of this checkout; third-party packages (Prophet,
    Backtrader, pandas...) must be installed there, as for any Dask task.
    """

    def __init__(self, scheduler: str | None, workers: int, processes: bool = True) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self.processes = processes
        self.description = f"Dask cluster at {scheduler}" if scheduler else \
            f"Dask LocalCluster of {workers} {'processes' if processes else 'threads'}"
        self._cluster = None
        self._client = None

    def __enter__(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UserError("--executor dask needs dask[distributed]: pip install 'dask[distributed]'") from None
        try:
            if self.scheduler:
                self._client = Client(self.scheduler, timeout="10s")
                self._upload_code()
            else:
                # No dashboard, and the scheduler's small HTTP server on a free loopback port (never a fixed 8787
                # that another cluster may hold).
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=self.processes,
                                             host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                                             scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
                self._client = Client(self._cluster)
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            where = self.scheduler or "a LocalCluster"
            raise UserError(f"cannot reach the Dask scheduler at {where}: {str(exc).splitlines()[0]}") from None
        return self

    def _upload_code(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "prophettrend_code.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for package in _PACKAGES:
                    for path in sorted((_ROOT / package).rglob("*.py")):
                        zf.write(path, path.relative_to(_ROOT).as_posix())
            try:
                self._client.upload_file(str(archive), load=True)  # load: puts the zip on sys.path
            except Exception as exc:  # the cluster's own errors come in many types; all mean the same here
                raise UserError(f"cannot send this project's code to the Dask cluster: {_first_line(exc)}") from None

    def run(self, fn, tasks):
        from distributed import as_completed

        assert self._client is not None, "use DaskExecutor as a context manager"
        futures = {}
        for task in tasks:
            # pure=False: the key is ours (a cell's key is a content hash), not a hash Dask computes of the data
            future = self._client.submit(fn, task, key=f"{getattr(fn, '__name__', 'task')}-{_task_key(task)}",
                                         pure=False)
            futures[future] = task
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except ModuleNotFoundError as exc:
                    raise UserError(f"the Dask workers cannot import {exc.name!r}: install this project's "
                                    "dependencies on them") from None
                except RuntimeError as exc:
                    if "deserializ" not in str(exc):
                        raise
                    raise UserError(f"the Dask cluster cannot read the tasks ({_first_line(exc)}); its scheduler "
                                    "and workers need this project's dependencies") from None
                yield futures[future], result
        finally:
            for future in futures:
                future.cancel()

    def __exit__(self, *exc):
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _task_key(task: Any) -> str:
    return str(getattr(task, "key", id(task)))


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_executor(kind: str, workers: int | None = None, scheduler: str | None = None) -> Executor:
    """``local`` (processes; inline when ``workers`` is 1) or ``dask`` (at ``scheduler``, or a LocalCluster)."""
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if kind == "local":
        if scheduler:
            raise UserError("--scheduler is for --executor dask")
        return InlineExecutor() if workers == 1 else ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(scheduler, workers)
    raise UserError(f"unknown executor {kind!r}; choose local or dask")
