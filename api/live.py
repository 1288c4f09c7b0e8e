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

StopReason = Literal["cancelled", "interrupted"]


@dataclass
class LiveRun:
    run_id: str
    status: Status = "queued"
    events: list[Event] = field(default_factory=list)
    result: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, name: EventName, data: EventData) -> Event:
        """Number the event, keep it and wake the followers."""
        event = Event(len(self.events) + 1, self.run_id, name, data)
        self.events.append(event)
        self._wake()
        return event

    @property
    def finished(self) -> bool:
        """The terminal event is in ``events``: nothing more will be appended."""
        return self.status in TERMINAL

    def end(self, status: Status, result: Result) -> None:
        """The terminal event has been appended: resolve waiters, release followers."""
        self.status = status
        if not self.result.done():
            self.result.set_result(result)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int, heartbeat_s: float) -> AsyncIterator[Event | None]:
        """Events with ids above ``after``, as they come, until the run ends; ``HEARTBEAT``
        (None) after every ``heartbeat_s`` without one."""
        seen = max(0, after)
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
