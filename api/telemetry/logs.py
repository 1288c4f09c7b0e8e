"""Structured logs: one JSON object per line, with the record's extra fields.

No line carries a question, an answer, a prompt or a key. The project's own lines never do; the
libraries under it print payloads at debug level (aiosqlite its SQL arguments, checkpoints and
questions included; openai and httpx their requests, and others), so below INFO only the
project's own loggers speak unless ``LOG_PAYLOADS`` is set deliberately.
"""

import json
import logging
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

OWN = ("api", "graph")
"""The project's loggers: the only ones heard below INFO without LOG_PAYLOADS."""

QUIET = ("httpx", "httpx2", "httpcore", "httpcore2", "openai")
"""A line per request even at INFO: WARNING and up, unless LOG_PAYLOADS."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def bare_url(url: str) -> str:
    """The URL to log: without the user and password or the query, where keys may travel."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _own(name: str) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in OWN)


def _no_payloads(record: logging.LogRecord) -> bool:
    """Below INFO, the project's own lines only (a library may set its own logger's level)."""
    return record.levelno >= logging.INFO or _own(record.name)


def configure_logging(level: str, *, payloads: bool = False, stream: TextIO | None = None) -> None:
    """Log at ``level`` to ``stream`` (stderr by default); ``payloads`` lets the libraries' debug
    lines through, payloads and all."""
    threshold = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    if not payloads:
        handler.addFilter(_no_payloads)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold if payloads else max(threshold, logging.INFO))
    for name in OWN:
        logging.getLogger(name).setLevel(threshold)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.NOTSET if payloads else logging.WARNING)
