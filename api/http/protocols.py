"""The HTTP protocols the service is served with: uvicorn's httptools (where it installs) or h11
protocol, each with the same connection guard.

A guard holds a connection's slot (``connections.Slots``) and its deadlines: the request head
must arrive within HEADER_TIMEOUT_S of the connection or of the previous response, and be at
most MAX_HEAD_BYTES; a body within REQUEST_BODY_TIMEOUT_S of its head. The protocol tells its
guard when a head and a body are complete, from its parser's own events.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from api.http.connections import BUSY_BODY, BUSY_HEADERS, ProbesOnly, Slot, Slots, raw_response
from api.http.errors import error_body_bytes
from api.settings import ConfigurationError, Settings

MAX_HEAD_BYTES = 16 * 1024
"""A request head (request line and headers) still incomplete past this many bytes is refused
with a 431, whichever parser serves (h11's own default limit; httptools has none). It is checked
after each read is parsed, so a head that ends within the read that crosses it is served."""
H11_BUFFER_BYTES = 1024 * 1024
"""h11's own cap on an incomplete head, above any one read: MAX_HEAD_BYTES answers first."""
PROBE_HEAD_TIMEOUT_S = 1.0
"""A probe slot's head deadline: a probe sends its head at once, a squatter loses the slot soon."""


@dataclass(frozen=True)
class Limits:
    """One server's deadlines and its count of open connections."""

    header_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    slots: Slots = field(default_factory=lambda: Slots(max_connections=1000, max_per_client=250))


def _closing(status: bytes, message: str, code: str) -> bytes:
    body = error_body_bytes(message, code=code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return raw_response(status, body, headers)


class ConnectionGuard:
    """One connection's slot and deadlines."""

    def __init__(self, limits: Limits, transport: asyncio.Transport, client_host: str) -> None:
        self.limits = limits
        self.transport = transport
        self.client_host = client_host
        self.loop = asyncio.get_running_loop()
        self.slot: Slot | None = limits.slots.take(client_host)
        self.awaiting_head = False
        self._head_bytes = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._cycle: Any = None
        """The request whose body the body deadline is for (uvicorn's cycle of either parser)."""

    def refuse(self) -> None:
        """No slot: the 503 at once, and close."""
        self.transport.write(raw_response(b"503 Service Unavailable", BUSY_BODY, BUSY_HEADERS))
        self.transport.close()

    def await_head(self) -> None:
        self._cancel_head()
        self.awaiting_head, self._head_bytes = True, 0
        timeout_s = self.limits.header_timeout_s
        if self.slot == "probe":
            timeout_s = min(timeout_s, PROBE_HEAD_TIMEOUT_S)
        self._head_deadline = self.loop.call_later(timeout_s, self._head_timed_out)

    def received(self, size: int) -> None:
        """``size`` bytes were read (and parsed); a head still incomplete past its cap is refused."""
        if not self.awaiting_head:
            return
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            message = f"the request head is larger than {MAX_HEAD_BYTES} bytes"
            self.transport.write(_closing(b"431 Request Header Fields Too Large", message, "head_too_large"))
            self.release()
            self.transport.close()

    def head_arrived(self, cycle: Any, body_follows: bool) -> None:
        self.awaiting_head = False
        self._cancel_head()
        self._cycle = cycle
        self._stop_body_deadline()
        if body_follows:
            self._body_deadline = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)

    def body_arrived(self) -> None:
        self._stop_body_deadline()

    def release(self) -> None:
        """No more deadlines for this connection, and its slot is free."""
        self.awaiting_head = False
        self._cancel_head()
        self._stop_body_deadline()
        if self.slot is not None:
            self.limits.slots.give_back(self.client_host, self.slot)
            self.slot = None

    def _cancel_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.awaiting_head and not self.transport.is_closing():
            if self.slot == "probe":  # over a cap and no probe: the 503 it would have had at once
                self.transport.write(raw_response(b"503 Service Unavailable", BUSY_BODY, BUSY_HEADERS))
            self.transport.close()

    def _body_timed_out(self) -> None:
        """408 in the error shape if no response has started, then close."""
        self._body_deadline = None
        if self.transport.is_closing():
            return
        cycle = self._cycle
        if cycle is not None and not cycle.response_started:
            message = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
            self.transport.write(_closing(b"408 Request Timeout", message, "request_timeout"))
            cycle.disconnected = True  # the app's own response, if it comes, goes nowhere
        self.transport.close()


class Guarded(asyncio.Protocol):
    """What both guarded protocols do alike: take a slot, and await each request's head."""

    limits: Limits = Limits()
    guard: ConnectionGuard
    client: Any
    cycle: Any
    app: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard = ConnectionGuard(self.limits, transport, self.client[0] if self.client else "")
        if self.guard.slot is None:
            self.guard.refuse()
            return
        if self.guard.slot == "probe":
            self.app = ProbesOnly(self.app)
        self.guard.await_head()

    def data_received(self, data: bytes) -> None:
        if not self.guard.awaiting_head and self.cycle is not None and self.cycle.response_complete:
            self.guard.await_head()  # the first bytes of the next request: its head has the same deadline
        super().data_received(data)
        self.guard.received(len(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release()
        super().connection_lost(exc)


class GuardedH11Protocol(Guarded, H11Protocol):
    """uvicorn's h11 protocol, guarded."""

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        self._seen: object = None
        """The last request whose head the guard was told of."""

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not self._seen:  # a new request's head is complete
            self._seen = self.cycle
            self.guard.head_arrived(self.cycle, body_follows=self.conn.their_state is h11.SEND_BODY)
        elif self.conn.their_state is not h11.SEND_BODY:
            self.guard.body_arrived()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.guard.release()  # the websocket protocol takes the connection over (and the app refuses it)
        super().handle_websocket_upgrade(event)


def httptools_protocol() -> type[Guarded] | None:
    """uvicorn's httptools protocol, guarded; None where httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol, guarded."""

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.guard.head_arrived(self.cycle, body_follows=True)  # its end is on_message_complete

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.guard.body_arrived()

        def handle_websocket_upgrade(self) -> None:
            self.guard.release()
            super().handle_websocket_upgrade()

    return GuardedHttpToolsProtocol


def guarded_protocol(settings: Settings) -> type[Guarded]:
    """The protocol class for ``uvicorn.Config(http=...)`` that HTTP_PARSER names, with these
    settings' limits and its own count of open connections (one class per server)."""
    base: type[Guarded] | None = GuardedH11Protocol
    if settings.http_parser != "h11":
        base = httptools_protocol() or (None if settings.http_parser == "httptools" else GuardedH11Protocol)
    if base is None:
        raise ConfigurationError("HTTP_PARSER=httptools, but httptools is not installed")
    per_client = settings.max_connections_per_client or max(1, settings.max_connections // 4)
    slots = Slots(settings.max_connections, min(per_client, settings.max_connections))
    limits = Limits(settings.header_timeout_s, settings.request_body_timeout_s, slots)
    return type(f"Configured{base.__name__}", (base,), {"limits": limits})
