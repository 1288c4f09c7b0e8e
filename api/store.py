"""Where runs, their results and their event logs are kept: an async interface, so a server
database can stand in for the embedded SQLite file later.

Writes that follow a run (events, status changes, the final result) are queued and committed by
one writer in order, the ones ready together in one transaction; a write that fails is rolled
back and retried until it sticks, so nothing admitted is lost to a passing storage fault. The
run's followers never wait on the writer: they are fed from memory while the run is live.
"""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from graph import Result
from graph.events import EventData, EventName

Status = Literal["queued", "running", "completed", "partial", "failed", "cancelled", "interrupted"]
"""A run's status as the service stores it: the engine's outcomes, and the service's own."""

TERMINAL: frozenset[Status] = frozenset({"completed", "partial", "failed", "cancelled", "interrupted"})

REPLAY_PAGE = 500
"""Events read from storage at a time when a stream replays a run."""


class RunNotFound(LookupError):
    """No run has this id."""


class StorageUnavailable(Exception):
    """The store cannot take writes now (disk full, database locked, I/O error)."""


@dataclass(frozen=True)
class Event:
    """One step of a run, numbered from 1 within the run."""

    id: int
    run_id: str
    event: EventName
    data: EventData


@dataclass(frozen=True)
class RunRecord:
    id: str
    status: Status
    question: str
    request: dict[str, Any]
    created_at: str
    updated_at: str
    result: Result | None


class RunStore(Protocol):
    healthy: bool
    """False while queued writes keep failing; ready again once one commits."""

    async def create(self, run_id: str, question: str, request: dict[str, Any]) -> RunRecord:
        """Store a new queued run, committed before it returns; raises StorageUnavailable."""
        ...

    def append(self, event: Event) -> None:
        """Queue one event for the writer."""
        ...

    def set_status(self, run_id: str, status: Status) -> None:
        """Queue a status change for the writer."""
        ...

    async def finish(self, run_id: str, status: Status, result: Result, event: Event) -> None:
        """Queue the final status, result and terminal event (one transaction); return once
        they are committed, however many retries that takes."""
        ...

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every write queued so far is committed; False if some are not in time."""
        ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def events(self, run_id: str, after: int = 0, limit: int = REPLAY_PAGE) -> list[Event]:
        """At most ``limit`` events with ids above ``after``, in order."""
        ...

    async def last_event_id(self, run_id: str) -> int:
        """The id of the run's last stored event; 0 if it has none."""
        ...

    async def recent(self, limit: int, before: str | None = None) -> list[RunRecord]:
        """Newest first; ``before`` is the id of the last run of the previous page."""
        ...

    async def interrupt_unfinished(self) -> list[str]:
        """Mark queued or running runs whose process is gone as interrupted, with a final event."""
        ...

    async def close(self) -> None:
        """Commit what is queued (briefly; what cannot be committed is logged) and close."""
        ...
