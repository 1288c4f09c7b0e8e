"""A run this process is executing: its events so far, in memory, and whoever follows or waits."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from api.store import TERMINAL, Event, Status
from graph import Result
from graph.events import EventData, EventName

HEARTBEAT = None
"""What ``follow`` yields when nothing happened for a heartbeat interval."""

StopReason = Literal["cancelled", "interrupted", "suspended"]
"""Why a run was stopped: by a caller, by a shutdown that ends it, or by a shutdown that leaves
it to resume in the next process."""


@dataclass
class LiveRun:
    run_id: str
    status: Status = "queued"
    base: int = 0
    """The id of the run's last event before this process took it up (0 for a new run)."""
    repeats: set[tuple[object, ...]] = field(default_factory=set)
    """Replay keys of the events before the seam: a resumed run does not log them again."""
    events: list[Event] = field(default_factory=list)
    """The events this process added, numbered from ``base`` + 1."""
    result: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, name: EventName, data: EventData) -> Event:
        """Number the event, keep it and wake the followers."""
        event = Event(self.last_event_id + 1, self.run_id, name, data)
        self.events.append(event)
        self._wake()
        return event

    @property
    def last_event_id(self) -> int:
        return self.base + len(self.events)

    @property
    def finished(self) -> bool:
        """Nothing more will be appended: the terminal event is in ``events``, or the run was
        left to resume in another process."""
        return self.status in TERMINAL or self.stop_reason == "suspended"

    def end(self, status: Status, result: Result) -> None:
        """The terminal event has been appended: resolve waiters, release followers."""
        self.status = status
        if not self.result.done():
            self.result.set_result(result)
        self._wake()

    def suspend(self, error: Exception) -> None:
        """The run is left to resume in the next process: waiters get ``error``, followers are
        released (they reconnect with Last-Event-ID)."""
        if not self.result.done():
            self.result.set_exception(error)
            self.result.exception()  # retrieved: nobody may be waiting
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int, heartbeat_s: float) -> AsyncIterator[Event | None]:
        """Events of this process with ids above ``after``, as they come, until the run ends;
        ``HEARTBEAT`` (None) after every ``heartbeat_s`` without one."""
        seen = max(0, after - self.base)
        while True:
            while seen < len(self.events):
                seen += 1
                yield self.events[seen - 1]
            if self.finished:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), heartbeat_s)
            except TimeoutError:
                yield HEARTBEAT
