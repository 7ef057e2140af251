"""Structured JSON log lines (one object per line, CloudWatch-friendly) with secrets redacted.

Example:
    >>> import io, json, logging
    >>> stream = io.StringIO()
    >>> logger = setup_logging("INFO", secrets=["s3cr3t"], stream=stream)
    >>> log(logger, "cycle_start", now="2022-06-01T15:45:00-04:00", note="key s3cr3t leaked?")
    >>> line = json.loads(stream.getvalue())
    >>> line["event"], line["note"]
    ('cycle_start', 'key *** leaked?')
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Iterable, TextIO

LOGGER_NAME = "prophettrend.live"
# Where log lines go when setup_logging is given no stream; the CLI points it at a buffer (see live.cli).
default_stream: TextIO | None = None


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """A JSON-serialisable copy of ``value`` with every secret string replaced by ``***``."""
    secrets = [s for s in secrets if s]
    return json.loads(redact_text(json.dumps(value, default=str), secrets)) if secrets else value


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(entry, default=str), self.secrets)


def setup_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None) -> logging.Logger:
    """The cycle's logger, writing JSON lines to ``stream`` (stderr by default; CloudWatch collects it in Lambda)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or default_stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    logger.addHandler(handler)
    return logger


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
