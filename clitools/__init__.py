"""Command-line plumbing shared by every entry point: one-line errors, exit codes, progress bars.

Bad input must end as a single ``error: ...`` line on stderr and exit code 2, never a traceback.

Example:
    >>> parser = OneLineErrorParser(prog="demo")
    >>> _ = parser.add_argument("--n", type=int, default=1)
    >>> parser.parse_args(["--n", "3"]).n
    3
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

EXIT_BAD_INPUT = 2


class UserError(Exception):
    """A problem the user can fix (bad flag, missing credentials, ...); printed as one line, exit code 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad flag as one line (``error: ...``) instead of usage plus message."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_BAD_INPUT)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a default worth showing and the help does not say it already."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=110, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(EXIT_BAD_INPUT)


def guarded(main: Callable[[list[str] | None], int], *expected: type[BaseException]) -> Callable[[list[str] | None], int]:
    """Wrap a ``main(argv)`` so that expected exceptions become ``error: ...`` lines with exit code 2."""
    catch = (UserError, ValueError, *expected)

    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except catch as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(message)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            return 130

    wrapper.__doc__ = main.__doc__
    return wrapper


LINES_FROM = 20  # units of work; below that, progress lines off a terminal would be noise


def progress(total: int, desc: str, enabled: bool | None = None, *, unit: str = "bar", initial: int = 0,
             step_percent: float = 5.0, stream=None):
    """A tqdm bar on a terminal (stderr); when stderr is not a terminal (a log, CI, a pipe), one plain line
    every ``step_percent`` of the work instead, for work of at least ``LINES_FROM`` units (a fetch of two
    symbols needs no progress, and its one-line error stays one line). ``enabled=False`` (``--quiet``) shows
    nothing; ``initial`` counts work already done (a resumed run).

    >>> import io
    >>> out = io.StringIO()
    >>> with progress(40, "sweep", unit="cell", step_percent=25, stream=out) as bar:
    ...     for _ in range(40):
    ...         bar.update(1)
    >>> print(out.getvalue().strip())
    sweep: 10/40 cell (25%)
    sweep: 20/40 cell (50%)
    sweep: 30/40 cell (75%)
    sweep: 40/40 cell (100%)
    """
    stream = stream if stream is not None else sys.stderr
    if enabled is None and not stream.isatty():
        if total < LINES_FROM:
            enabled = False
        else:
            return LineProgress(total, desc, unit=unit, initial=initial, step_percent=step_percent,
                                stream=stream)
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = True
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=False,
                dynamic_ncols=True, file=stream)


class LineProgress:
    """The tqdm calls the commands use (``update``, ``close``, ``unit``, a context manager), as plain lines."""

    def __init__(self, total: int, desc: str, *, unit: str = "bar", initial: int = 0, step_percent: float = 5.0,
                 stream=None) -> None:
        import time

        self.total, self.desc, self.unit, self.n = max(int(total), 0), desc, unit, int(initial)
        self.step = max(float(step_percent), 0.1)
        self.stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self._shown = self._percent() // self.step  # a resumed run does not repeat the lines it already had

    def _percent(self) -> float:
        return 100.0 * self.n / self.total if self.total else 100.0

    def update(self, n: int = 1) -> None:
        self.n += n
        reached = self._percent() // self.step
        if reached > self._shown:
            self._shown = reached
            self.stream.write(f"{self.desc}: {self.n}/{self.total} {self.unit} ({self._percent():.0f}%)\n")
            self.stream.flush()

    def close(self) -> None:
        pass

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
