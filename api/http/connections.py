"""Connection hygiene for the HTTP server: deadlines for each request's head and body, caps on
open connections (in all and per client address) with a few slots kept for health probes, a
higher file-descriptor limit, and a throttled log line when descriptors run out.

uvicorn closes idle keep-alive connections after a response, but a connection that opens and
sends nothing (or dribbles its headers or its body) stays open for ever; once file descriptors
run out, the event loop logs "socket.accept() out of system resource" on every retry.
"""

import asyncio
import logging
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from api.http.errors import error_body_bytes
from api.settings import Settings

log = logging.getLogger(__name__)

ACCEPT_FAILURE = "socket.accept() out of system resource"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_SLOTS = 32
"""Connections kept beyond the caps for health probes: each serves one probe and closes."""
PROBE_SLOTS_PER_CLIENT = 2
PROBE_HEAD_TIMEOUT_S = 1.0
"""A probe slot's head deadline: a probe sends its head at once, a squatter loses the slot soon."""

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


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request head and body deadlines and connection caps."""

    header_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    slots: Slots = Slots(max_connections=1000, max_per_client=250)

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        self._slot: Slot | None = None
        self._head_deadline: asyncio.TimerHandle | None = None
        self._waiting_after: object = None
        """The cycle (request) before the head we wait for: None on a new connection."""
        self._body_deadline: asyncio.TimerHandle | None = None
        self._body_of: object = None
        """The cycle (request) whose body the body deadline is for."""

    @property
    def _client_host(self) -> str:
        return self.client[0] if self.client else ""

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._waiting_after = self.cycle
        timeout_s = self.header_timeout_s
        if self._slot == "probe":
            timeout_s = min(timeout_s, PROBE_HEAD_TIMEOUT_S)
        self._head_deadline = self.loop.call_later(timeout_s, self._head_timed_out)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._slot = self.slots.take(self._client_host)
        if self._slot is None:
            transport.write(raw_response(b"503 Service Unavailable", BUSY_BODY, BUSY_HEADERS))
            transport.close()
            return
        if self._slot == "probe":
            self.app = ProbesOnly(self.app)
        self._await_head()

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_deadline is not None and self.cycle is not self._waiting_after:
            self._head_deadline.cancel()  # a new request's head is complete
            self._head_deadline = None
        if self.cycle is not self._body_of:  # a new request: its body has a deadline from now
            self._body_of = self.cycle
            self._stop_body_deadline()
            if self.conn.their_state is h11.SEND_BODY:
                self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_timed_out)
        elif self._body_deadline is not None and self.conn.their_state is not h11.SEND_BODY:
            self._stop_body_deadline()  # the body is complete

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.cycle is not None and self.cycle.response_complete:
            self._await_head()  # the first bytes of the next request: its head has the same deadline
        super().data_received(data)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._let_go()  # the websocket protocol takes the connection over (and the app refuses it)
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._let_go()
        super().connection_lost(exc)

    def _let_go(self) -> None:
        """No more deadlines for this connection, and its slot is free."""
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._stop_body_deadline()
        if self._slot is not None:
            self.slots.give_back(self._client_host, self._slot)
            self._slot = None

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            if self._slot == "probe":  # over a cap and no probe: the 503 it would have had at once
                self.transport.write(raw_response(b"503 Service Unavailable", BUSY_BODY, BUSY_HEADERS))
            self.transport.close()

    def _body_timed_out(self) -> None:
        """408 in the error shape if no response has started, then close."""
        self._body_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            body = error_body_bytes(
                f"the request body did not arrive within {self.body_timeout_s:g} s", code="request_timeout"
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            self.transport.write(raw_response(b"408 Request Timeout", body, headers))
            self.cycle.disconnected = True  # the app's own response, if it comes, goes nowhere
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these settings' limits, and its
    own count of open connections (one class per server)."""
    per_client = settings.max_connections_per_client or max(1, settings.max_connections // 4)
    return type(
        "ConfiguredH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.request_body_timeout_s,
            "slots": Slots(settings.max_connections, min(per_client, settings.max_connections)),
        },
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
