"""An S3 stand-in that enforces an IAM policy the way S3 does: a thin loopback HTTP proxy over moto's server.

moto's server stores objects faithfully but grants every request. Real S3, for a caller holding only a role's
policy, answers 403 AccessDenied for any action the policy does not allow, and, documented and easy to forget,
403 instead of 404 for a GET or HEAD of a *missing* key unless the caller may ``s3:ListBucket`` that key's
prefix. This proxy evaluates each request (path-style, as boto3 sends to an IP endpoint) against ``policy``:

* the request's action and resource: ``GET|HEAD /bucket/key`` s3:GetObject, ``PUT`` s3:PutObject, ``DELETE``
  s3:DeleteObject on ``arn:aws:s3:::bucket/key``; ``GET /bucket?list-type=2&prefix=p`` s3:ListBucket on
  ``arn:aws:s3:::bucket`` with the condition key ``s3:prefix = p``; anything else the function has no business
  doing is denied;
* Allow statements match on ``Action`` and ``Resource`` (IAM wildcards ``*`` and ``?``) and on ``StringLike`` /
  ``StringEquals`` conditions of ``s3:prefix``; a statement with any other condition does not match; an explicit
  Deny wins. No match: 403 AccessDenied.
* an allowed GET/HEAD that moto answers 404, while ListBucket on the key is not allowed, becomes 403.

Example (no server needed to evaluate a policy):
    >>> doc = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/p/*"]}]}
    >>> allowed(doc, "s3:GetObject", "arn:aws:s3:::b/p/ledger/x.json"), allowed(doc, "s3:PutObject", "arn:aws:s3:::b/p/x")
    (True, False)
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

_DENIED = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied"
           "</Message><RequestId>proxy</RequestId></Error>").encode()


def _matches(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        if operator not in ("StringLike", "StringEquals"):
            return False  # a condition this stand-in does not know never grants
        for key, wanted in tests.items():
            if key not in context:
                return False
            got = context[key]
            if not any(_matches(w, got) if operator == "StringLike" else w == got for w in _as_list(wanted)):
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """IAM's verdict for one request under one identity policy: an explicit Deny wins, else an Allow is needed."""
    verdict = False
    for s in _as_list(policy.get("Statement", [])):
        if not any(_matches(a, action, case=False) for a in _as_list(s.get("Action", []))):
            continue
        if not any(_matches(r, resource) for r in _as_list(s.get("Resource", []))):
            continue
        if "Condition" in s and not _condition_holds(s["Condition"], context or {}):
            continue
        if s.get("Effect") == "Deny":
            return False
        verdict = verdict or s.get("Effect") == "Allow"
    return verdict


def classify(method: str, path: str, query: str) -> tuple[str, str, dict[str, str]] | None:
    """(action, resource, condition context) of a path-style S3 request; None: not a request the role may make."""
    parts = unquote(path).lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    q = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return None
    if not key:
        if method in ("GET", "HEAD") and not (set(q) - {"list-type", "prefix", "max-keys", "delimiter",
                                                        "continuation-token", "start-after", "encoding-type"}):
            return "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": q.get("prefix", [""])[0]}
        return None
    if set(q) - {"x-id"}:
        return None  # tagging, ACLs, uploads...: nothing the function does
    action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
              "DELETE": "s3:DeleteObject"}.get(method)
    return (action, f"arn:aws:s3:::{bucket}/{key}", {}) if action else None


class PolicyProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, policy: dict) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.policy = policy
        self.denied: list[tuple[str, str]] = []  # (action, resource) of every request answered 403

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: PolicyProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _deny(self, what: tuple[str, str]) -> None:
        self.server.denied.append(what)
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(_DENIED) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(_DENIED)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = classify(self.command, url.path, url.query)
        if request is None:
            return self._deny((f"{self.command} {url.path}?{url.query}", ""))
        action, resource, context = request
        if not allowed(self.server.policy, action, resource, context):
            return self._deny((action, resource))
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        if answer.status == 404 and action == "s3:GetObject":
            bucket, _, key = resource[len("arn:aws:s3:::"):].partition("/")
            if not allowed(self.server.policy, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": key}):
                return self._deny((action, resource))  # S3 does not tell a missing key to one who may not list
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", answer.getheader("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _handle


@contextlib.contextmanager
def policy_proxy(upstream: str, policy: dict) -> Iterator[PolicyProxy]:
    """Serve the proxy on 127.0.0.1 (random port) in front of ``upstream`` for the ``with`` block."""
    server = PolicyProxy(upstream, policy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
