"""Strategy code under a deadline: ``decide()`` must return within its time budget, and may not end the process.

A strategy is a user's code: it may loop forever, sleep, or call ``sys.exit()``. Any of these would otherwise hold
the lease with no journal record (the next cycle only reports ``busy``) or end the invocation with no record and no
metric. :func:`call_with_budget` turns each into a :class:`~strategies.base.StrategyError`, which the cycle
journals as a strategy error before it releases the lease and prints the metric line.

The budget is ``STRATEGY_TIMEOUT_SECONDS`` (default :data:`DEFAULT_TIMEOUT_SECONDS`), and in Lambda never more than
the invocation's remaining time less :data:`MARGIN_SECONDS`, kept for sending the orders and writing the journal.

How it stops the call: in the main thread (the Lambda handler, the command line) a ``SIGALRM`` timer raises inside
the strategy's Python code, then again every second should the strategy swallow it; a thread cannot be killed, so
elsewhere (a cycle run from a worker thread) the call runs in a daemon thread that is abandoned at the deadline: it
holds no broker, lease or journal, so whatever it computes afterwards is never read. A call that returns after its
deadline (stuck in C code, which no signal interrupts) is an overrun too.

Example:
    >>> call_with_budget(lambda: 42, seconds=1.0)
    42
    >>> import time
    >>> call_with_budget(lambda: time.sleep(5), seconds=0.2)
    Traceback (most recent call last):
    ...
    strategies.base.StrategyError: decide() ran past its time budget of 0.2 s
    >>> import sys
    >>> call_with_budget(lambda: sys.exit(0), seconds=1.0)
    Traceback (most recent call last):
    ...
    strategies.base.StrategyError: decide() called sys.exit(0)
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable

from strategies.base import StrategyError

DEFAULT_TIMEOUT_SECONDS = 600.0
MARGIN_SECONDS = 30.0  # of a Lambda invocation's remaining time, kept for submitting and journaling


class _Overrun(BaseException):
    """Raised by the timer inside the strategy's code; a BaseException, so ``except Exception`` does not eat it."""


def budget_seconds(timeout: float | None, deadline: float | None, now: float | None = None) -> float | None:
    """The seconds ``decide()`` may take: ``timeout``, and at most up to ``deadline`` (a ``time.monotonic()``
    value, the invocation's end) less :data:`MARGIN_SECONDS`.

    >>> budget_seconds(600.0, deadline=100.0, now=0.0)
    70.0
    >>> budget_seconds(None, None) is None
    True
    """
    if deadline is None:
        return timeout
    left = deadline - (time.monotonic() if now is None else now) - MARGIN_SECONDS
    return left if timeout is None else min(timeout, left)


def call_with_budget(fn: Callable[[], Any], *, seconds: float | None, what: str = "decide()") -> Any:
    """``fn()``, or :class:`StrategyError` if it overran ``seconds`` (``None``: no limit) or raised SystemExit."""
    if seconds is not None and seconds <= 0:
        raise StrategyError(f"no time left for {what}: the invocation ends in less than {MARGIN_SECONDS:g} s")
    started = time.monotonic()
    if seconds is None:
        result = _guarded(fn, what)
    elif threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        result = _under_alarm(fn, seconds, what)
    else:
        result = _in_thread(fn, seconds, what)
    if seconds is not None and time.monotonic() - started > seconds:
        raise StrategyError(f"{what} ran past its time budget of {seconds:g} s")
    return result


def _guarded(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except SystemExit as exc:  # the strategy must not end the invocation: that would leave no record
        raise StrategyError(f"{what} called sys.exit({exc.code!r})") from None


def _under_alarm(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    def overrun(signum, frame):
        raise _Overrun()

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # and again every second, should the strategy catch it
    try:
        try:
            return _guarded(fn, what)
        finally:
            # cleared inside the guarded region: an alarm that fires as the call returns, before the timer is
            # off, is an overrun like any other, never a BaseException escaping past the cycle's journaling
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Overrun:
        signal.setitimer(signal.ITIMER_REAL, 0)  # the clearing above may be what the alarm interrupted
        raise StrategyError(f"{what} ran past its time budget of {seconds:g} s") from None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _in_thread(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = _guarded(fn, what)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"strategy {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StrategyError(f"{what} ran past its time budget of {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
