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


def progress(total: int, desc: str, enabled: bool | None = None, *, unit: str = "bar", initial: int = 0):
    """A tqdm bar on a terminal (stderr), silent otherwise; ``initial`` counts work already done (a resumed run)."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=False,
                dynamic_ncols=True)
