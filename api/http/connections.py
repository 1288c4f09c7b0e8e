"""Connection hygiene for the HTTP server: caps on open connections (in all and per client
address) with a few slots kept for health probes, a higher file-descriptor limit, and a
throttled log line when descriptors run out. The deadlines of each request's head and body are
kept by the protocols (``api.http.protocols``).

uvicorn closes idle keep-alive connections after a response, but a connection that opens and
sends nothing (or dribbles its headers or its body) stays open for ever; once file descriptors
run out, the event loop logs "socket.accept() out of system resource" on every retry.
"""

import logging
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import error_body_bytes

log = logging.getLogger(__name__)

ACCEPT_FAILURE = "socket.accept() out of system resource"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_SLOTS = 32
"""Connections kept beyond the caps for health probes: each serves one probe and closes."""
PROBE_SLOTS_PER_CLIENT = 2

BUSY_BODY = error_body_bytes(
    "too many open connections; retry later", code="too_many_connections", type="server_error"
)
BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BUSY_BODY)).encode()),
    (b"retry-after", b"1"),
    (b"connection", b"close"),
]

Slot = Literal["slot", "probe"]


def admission(
    *,
    open_total: int,
    open_from_client: int,
    probes_total: int,
    probes_from_client: int,
    max_connections: int,
    max_per_client: int,
) -> Slot | None:
    """A new connection's place: a slot while the server has room and its address is within its
    share; else a probe slot while some are free and its address holds few of them (so that a
    flood from a few addresses cannot take them all); else none, a 503 at once."""
    if open_total < max_connections and open_from_client < max_per_client:
        return "slot"
    if probes_total < PROBE_SLOTS and probes_from_client < PROBE_SLOTS_PER_CLIENT:
        return "probe"
    return None


@dataclass
class Slots:
    """The open connections of one server, by client address and slot kind."""

    max_connections: int
    max_per_client: int
    taken: dict[Slot, Counter[str]] = field(default_factory=lambda: {"slot": Counter(), "probe": Counter()})

    def take(self, client: str) -> Slot | None:
        slots, probes = self.taken["slot"], self.taken["probe"]
        kind = admission(
            open_total=slots.total(),
            open_from_client=slots[client],
            probes_total=probes.total(),
            probes_from_client=probes[client],
            max_connections=self.max_connections,
            max_per_client=self.max_per_client,
        )
        if kind is not None:
            self.taken[kind][client] += 1
        return kind

    def give_back(self, client: str, kind: Slot) -> None:
        counts = self.taken[kind]
        counts[client] -= 1
        if counts[client] <= 0:
            del counts[client]


def raw_response(status: bytes, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 " + status, *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class ProbesOnly:
    """The app as a probe slot serves it: /healthz and /readyz, then close; else 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROBE_PATHS:

            async def closing(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

            await self.app(scope, receive, closing)
            return
        await send({"type": "http.response.start", "status": 503, "headers": BUSY_HEADERS})
        await send({"type": "http.response.body", "body": BUSY_BODY})


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
