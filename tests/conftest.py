"""Shared test set-up: keep every test offline and quiet."""

import logging
import os
import socket

import pytest

logging.getLogger("cmdstanpy").disabled = True
logging.getLogger("prophet.plot").disabled = True
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PROPHETTREND_NETWORK_TESTS") != "1":
    # libcurl (under yfinance) opens its own sockets, out of reach of the Python guard below; a dead proxy on
    # loopback makes any request that escapes a stub fail at once instead of reaching the internet.
    for _name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ[_name] = "http://127.0.0.1:9"
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        return _real_connect(self, address)
    if self.family == socket.AF_UNIX:
        return _real_connect(self, address)
    raise OSError(f"test tried to reach {address!r}: tests must stay on 127.0.0.1")


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """No test reaches the internet: any connection other than loopback fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    yield
