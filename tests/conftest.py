"""Shared test set-up: keep every test offline and quiet."""

import logging
import os
import socket

import pytest

logging.getLogger("cmdstanpy").disabled = True
logging.getLogger("prophet.plot").disabled = True
os.environ.setdefault("MPLBACKEND", "Agg")

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
