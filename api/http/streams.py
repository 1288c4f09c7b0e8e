"""Turning a run's events into a server-sent-event response: the one follow loop, with
heartbeats and cancel-on-disconnect, for every face that streams (the runs API, the OpenAI
route)."""

import re
from collections.abc import AsyncIterator, Callable, Iterable

from fastapi.responses import StreamingResponse

from api.http.errors import ApiError
from api.http.sse import HEARTBEAT_FRAME, RETRY_FRAME, SSE_HEADERS, encode
from api.runs.lookup import RunLookup
from api.storage.interface import Event
from graph.events import TERMINAL_EVENTS

LAST_EVENT_ID_PATTERN = r"^[ \t]*[0-9]{0,15}[ \t]*$"
"""A ``Last-Event-ID`` this service takes: an event id (below 2**53, a safe integer in
JavaScript), or blank for none."""
LAST_EVENT_ID = re.compile(LAST_EVENT_ID_PATTERN)

Render = Callable[[Event], Iterable[str]]
"""The frames one event becomes on this face (none, one or several)."""


def last_event_id(header: str | None) -> int:
    if header is None:
        return 0
    if not LAST_EVENT_ID.fullmatch(header):
        raise ApiError(
            400,
            "Last-Event-ID must be an event id (a non-negative integer)",
            param="Last-Event-ID",
            code="invalid_last_event_id",
        )
    return int(header.strip(" \t") or 0)


async def follow_frames(
    lookup: RunLookup,
    run_id: str,
    render: Render,
    *,
    after: int = 0,
    first: Iterable[str] = (),
    last: Iterable[str] = (),
    unfinished: Iterable[str] = (),
    on_disconnect: Callable[[str], None] | None,
) -> AsyncIterator[str]:
    """``first``, the run's events rendered as they come with heartbeats while it is quiet,
    then ``last``; before it ``unfinished`` if the stream ends before the run (the process
    shuts down and leaves the run to resume). A client that goes away before the end has
    ``on_disconnect`` called with the run's id (``api.http.deps.get_on_disconnect``)."""
    ended = False
    try:
        for frame in first:
            yield frame
        async for event in lookup.follow(run_id, after):
            if event is None:
                yield HEARTBEAT_FRAME
                continue
            ended = ended or event.event in TERMINAL_EVENTS
            for frame in render(event):
                yield frame
        if not ended:
            for frame in unfinished:
                yield frame
        for frame in last:
            yield frame
    finally:
        if not ended and on_disconnect is not None:
            on_disconnect(run_id)


def run_events_response(
    lookup: RunLookup, run_id: str, *, after: int, on_disconnect: Callable[[str], None] | None
) -> StreamingResponse:
    """The run's events after ``after`` as named SSE events, then live until it ends."""
    frames = follow_frames(
        lookup,
        run_id,
        lambda event: (encode(event),),
        after=after,
        first=(RETRY_FRAME,),
        on_disconnect=on_disconnect,
    )
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
