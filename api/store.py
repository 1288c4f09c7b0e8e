"""Where runs, their results and their event logs are kept: a small interface, so a server
database can stand in for the embedded SQLite file later."""

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from graph import Result

Status = Literal["queued", "running", "completed", "partial", "failed", "cancelled", "interrupted"]
TERMINAL: frozenset[Status] = frozenset({"completed", "partial", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class Event:
    """One step of a run, numbered from 1 within the run."""

    id: int
    run_id: str
    event: str
    data: dict[str, Any]


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
    def create(self, run_id: str, question: str, request: dict[str, Any]) -> RunRecord: ...

    def set_status(self, run_id: str, status: Status) -> None: ...

    def finish(self, run_id: str, status: Status, result: Result | None) -> None:
        """Store the final status and result in one transaction."""
        ...

    def append(self, event: Event) -> None: ...

    def get(self, run_id: str) -> RunRecord | None: ...

    def events(self, run_id: str, after: int = 0) -> list[Event]: ...

    def recent(self, limit: int, before: str | None = None) -> list[RunRecord]:
        """Newest first; ``before`` is the id of the last run of the previous page."""
        ...

    def interrupt_unfinished(self) -> list[str]:
        """Mark queued or running runs whose process is gone as interrupted."""
        ...

    def close(self) -> None: ...
