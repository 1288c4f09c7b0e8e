"""Turning a run's events into a server-sent-event response."""

import asyncio
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from api.errors import ApiError
from api.events import HEARTBEAT_FRAME, SSE_HEADERS, TERMINAL_EVENTS, encode
from api.runner import Runner

_background: set[asyncio.Task[bool]] = set()

MAX_EVENT_ID = 2**53


def last_event_id(header: str | None) -> int:
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_EVENT_ID:
        raise ApiError(
            400, "Last-Event-ID must be an event id (a non-negative integer)", param="Last-Event-ID"
        )
    return value


def cancel_later(runner: Runner, run_id: str) -> None:
    task = asyncio.create_task(runner.cancel(run_id))
    _background.add(task)
    task.add_done_callback(_background.discard)


def run_events_response(
    runner: Runner, run_id: str, *, after: int, cancel_on_disconnect: bool
) -> StreamingResponse:
    """Replay the run's events after ``after``, follow it live, heartbeat while idle.

    The run must exist. A client that goes away does not stop the run unless ``cancel_on_disconnect``.
    """

    async def frames() -> AsyncIterator[str]:
        ended = False
        try:
            async for event in runner.follow(run_id, after):
                if event is None:
                    yield HEARTBEAT_FRAME
                    continue
                yield encode(event)
                ended = ended or event.event in TERMINAL_EVENTS
        finally:
            if not ended and cancel_on_disconnect:
                cancel_later(runner, run_id)

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
