"""A moto server on 127.0.0.1 (free port) with fake credentials, for tests against the real boto3."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never read a developer's real profile or credentials.
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start ``moto.server.ThreadedMotoServer`` on 127.0.0.1; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def moto_environment(monkeypatch) -> Iterator[str]:
    """A moto server, and this process's environment pointed at it (``AWS_ENDPOINT_URL``, fake credentials)."""
    with moto_server() as url:
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        for key, value in {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(key, value)
        yield url
