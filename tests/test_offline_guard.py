"""The suite's own promise: nothing here reaches the internet, through Python sockets or through libcurl."""

import socket

import pytest


def test_python_sockets_cannot_leave_loopback():
    with pytest.raises(OSError, match="tests must stay on 127.0.0.1"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)


def test_libcurl_requests_hit_the_dead_loopback_proxy():
    from curl_cffi import requests

    with pytest.raises(Exception) as exc:
        requests.get("https://query2.finance.yahoo.com/v8/finance/chart/AAPL", timeout=5)
    assert "127.0.0.1" in str(exc.value) or "proxy" in str(exc.value).lower() or "connect" in str(exc.value).lower()
