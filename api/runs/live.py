"""A run this process is executing: its events so far, in memory, and whoever follows or waits.

Followers see an event once it is stored: an event id a client has seen is never given to
another event, even if the process dies the next moment and another one resumes the run. While
the store cannot write (``healthy`` is false) they see events from memory at once instead: the
run stays visible through a storage fault, at the price of that guarantee during it."""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from api.storage.interface import TERMINAL, Event, Status
from graph import Result
from graph.events import EventData, EventName

HEARTBEAT = None
"""What ``follow`` yields when nothing happened for a heartbeat interval."""

RECHECK_S = 0.5
"""How often a follower waiting for events to be stored looks at the store's health again."""

StopReason = Literal["cancelled", "interrupted", "suspended", "lost"]
"""Why a run was stopped: by a caller, by a shutdown that ends it, by a shutdown that leaves it
to resume in the next process, or because another process took it over (this one had lost its
lease)."""

LET_GO: frozenset[StopReason] = frozenset({"suspended", "lost"})
"""Stops after which the run goes on elsewhere: this process writes nothing more for it."""


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
    stored: int = 0
    """The id up to which the events are stored (at least ``base``)."""
    store_healthy: Callable[[], bool] = lambda: True
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

    def __post_init__(self) -> None:
        self.stored = max(self.stored, self.base)

    @property
    def last_event_id(self) -> int:
        return self.base + len(self.events)

    def stored_up_to(self, event_id: int) -> None:
        """The store has committed the events up to ``event_id``."""
        if event_id > self.stored:
            self.stored = event_id
            self._wake()

    def _visible(self) -> int:
        return self.last_event_id if not self.store_healthy() else self.stored

    @property
    def finished(self) -> bool:
        """Nothing more will be appended: the terminal event is in ``events``, or the run was
        left to resume in another process."""
        return self.status in TERMINAL or self.stop_reason in LET_GO

    def end(self, status: Status, result: Result) -> None:
        """The terminal event has been appended: resolve waiters, release followers."""
        self.status = status
        if not self.result.done():
            self.result.set_result(result)
        self._wake()

    def let_go(self, error: Exception) -> None:
        """The run goes on in another process: waiters get ``error``, followers are released
        (they reconnect with Last-Event-ID)."""
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
        quiet = 0.0
        while True:
            while seen < self._visible() - self.base:
                seen += 1
                quiet = 0.0
                yield self.events[seen - 1]
            if self.finished and seen >= len(self.events):
                return
            changed = self._changed
            pending = seen < len(self.events)  # appended, not stored yet
            wait_s = min(RECHECK_S, heartbeat_s - quiet) if pending else heartbeat_s - quiet
            started = asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(changed.wait(), wait_s)
            except TimeoutError:
                quiet += asyncio.get_running_loop().time() - started
                if quiet >= heartbeat_s:
                    quiet = 0.0
                    yield HEARTBEAT
