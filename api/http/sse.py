"""The event vocabulary (graph/events.py) on the wire: the server-sent-event encoding, and an
event as a client reads it back (its frames are documented in ``api.http.openapi``)."""

import json
from typing import Any

from pydantic import BaseModel

from api.storage.interface import Event
from graph.events import EventData, EventName


class StreamEvent(BaseModel):
    """One server-sent event: ``id:`` counts up by one within a run, ``event:`` names it and
    ``data:`` is one JSON object whose shape depends on the name (graph/events.py)."""

    id: int
    event: EventName
    data: EventData


HEARTBEAT_FRAME = ": heartbeat\n\n"

RECONNECT_MS = 3000
RETRY_FRAME = f"retry: {RECONNECT_MS}\n\n"
"""How long a browser's EventSource waits before it reconnects to a dropped stream."""

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
"""Headers that keep proxies from buffering or caching the stream."""


def encode(event: Event) -> str:
    """One SSE frame. The data is a single line of JSON (newlines inside strings are escaped),
    so no text in an event can break the framing."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


def encode_data(payload: Any) -> str:
    """A bare ``data:`` frame, as OpenAI-style streams use."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n"
