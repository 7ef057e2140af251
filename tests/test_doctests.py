"""Every docstring example in the shipped packages runs and gives what it says."""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["strategies", "marketdata", "brokers", "live", "clitools", "backtests", "deploy"]
# Modules whose import needs something a test machine may not have, or that are entry points.
SKIP = {"backtests.__main__", "marketdata.__main__", "deploy.__main__"}


def _modules():
    names = []
    for package in PACKAGES:
        try:
            pkg = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        names.append(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            if info.name not in SKIP:
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
