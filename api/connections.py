"""Connection hygiene for the HTTP server: a deadline for each request's head, a cap on open
connections, a higher file-descriptor limit, and a throttled log line when they run out.

uvicorn closes idle keep-alive connections after a response, but a connection that opens and
sends nothing (or dribbles its headers) stays open for ever; once file descriptors run out, the
event loop logs "socket.accept() out of system resource" on every retry.
"""

import asyncio
import logging
import resource
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from api.errors import error_body_bytes

log = logging.getLogger(__name__)

ACCEPT_FAILURE = "socket.accept() out of system resource"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap."""

    header_timeout_s: float = 15.0
    max_connections: int = 1000

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None
        """The cycle (request) before the head we wait for: None on a new connection."""

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._waiting_after = self.cycle
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            body = error_body_bytes(
                "too many open connections; retry later", code="too_many_connections", type="server_error"
            )
            head = (
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
            )
            transport.write(head.encode() + body)
            transport.close()
            return
        self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_deadline is not None and self.cycle is not self._waiting_after:
            self._head_deadline.cancel()  # a new request's head is complete
            self._head_deadline = None

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.cycle is not None and self.cycle.response_complete:
            self._await_head()  # the first bytes of the next request: its head has the same deadline
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "ConfiguredH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-files limit", extra={"soft": soft, "hard": hard})
    return soft


class Throttle(logging.Filter):
    """Lets one record with ``message`` through per ``every_s``, and says how many it held back."""

    def __init__(self, message: str, every_s: float = 30.0) -> None:
        super().__init__()
        self.message = message
        self.every_s = every_s
        self._last = -every_s
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.message not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held += 1
            return False
        self._last = now
        if self._held:
            record.msg = f"{record.msg} ({self._held} more like it held back)"
            self._held = 0
        return True


def throttle_accept_failures(every_s: float = 30.0) -> None:
    logging.getLogger("asyncio").addFilter(Throttle(ACCEPT_FAILURE, every_s))
