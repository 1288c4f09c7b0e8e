"""Where runs, their results and their event logs are kept: an async interface, so a server
database can stand in for the embedded SQLite file later.

Writes that follow a run (events, status changes, the final result) are queued and committed by
one writer in order, the ones ready together in one transaction; a write that fails is rolled
back and retried until it sticks, so nothing admitted is lost to a passing storage fault. The
run's followers never wait on the writer: they are fed from memory while the run is live.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pydantic_core

from api.storage.checkpoints import BestEffortSaver
from graph import CallRecord, Result
from graph.events import EventData, EventName
from graph.journal import Entry

Status = Literal["queued", "running", "completed", "partial", "failed", "cancelled", "interrupted"]
"""A run's status as the service stores it: the engine's outcomes, and the service's own."""

TERMINAL: frozenset[Status] = frozenset({"completed", "partial", "failed", "cancelled", "interrupted"})

REPLAY_PAGE = 500
"""Events read from storage at a time when a stream replays a run."""


def to_text(text: str) -> str:
    """Text any store can keep: a lone surrogate in model output (not UTF-8) is replaced rather
    than failing the write."""
    return text.encode("utf-8", "replace").decode("utf-8")


def to_json(value: Any) -> str:
    """Compact JSON that any store can keep as text: pydantic-core's encoder (5x the standard
    library's on an event), and the standard library's for text it refuses (a lone surrogate,
    which ``to_text`` then replaces)."""
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError:
        return to_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


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
    completion_budget: int | None = None
    """The output cap the OpenAI route's caller set (``max_completion_tokens``), if any."""
    key_hash: str | None = None
    """The API key (its SHA-256) the run belongs to; None when the service needs no key."""


@dataclass(frozen=True)
class Spend:
    """What one API key has used, as its quotas count it (``api.runs.quotas``)."""

    requests: int
    """Runs it created in the last 60 seconds."""
    window_frees_in_s: float
    """Seconds until the oldest of those is a minute old."""
    tokens: int
    """Today (UTC): the tokens of its finished runs, and the token budgets of its unfinished ones."""
    cost_usd: float
    """Today (UTC): the same in US dollars."""
    day_ends_in_s: float


Grant = Callable[[Spend], dict[str, Any]]
"""Given what the run's key has spent, the request to store (its budgets capped by what is left
of the key's quotas); raises to refuse the run."""

IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an Idempotency-Key names its run."""


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's Idempotency-Key, as stored: hashed with the caller's key hash (``scope``), and
    the fingerprint of the request it came with."""

    scope: str
    fingerprint: str


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key names a run that was made from another request."""


@dataclass(frozen=True)
class UsageDay:
    """What one API key's runs spent on one day (UTC)."""

    day: str
    runs: int
    """Runs created that day, finished or not."""
    total_tokens: int
    """Of the finished ones."""
    cost_usd: float | None
    """Of the finished ones that have a cost; None if none has."""


@dataclass(frozen=True)
class Claim:
    """An unfinished run this process now owns because the one that owned it is gone."""

    run: RunRecord
    resumes: int
    """How many times the run's process died with it (this time included); a run given up on
    purpose (a shutdown that left it to resume) does not count."""
    cancel_requested: bool = False
    """A caller cancelled the run while it had no live owner: end it, do not run it."""


class RunStore(Protocol):
    """Runs are owned by leases: the process that stores or claims a run holds it until
    ``lease_s`` after its last ``renew``. A run whose lease expired (or whose owner is known to
    be gone) can be claimed by any process on the same store."""

    @property
    def healthy(self) -> bool:
        """False while queued writes keep failing; true again once one commits."""
        ...

    shared: bool
    """Whether processes on other machines execute runs from this store too (replicas): runs
    wait in the store for a free slot anywhere, not in the process that admitted them."""

    @property
    def checkpointer(self) -> BestEffortSaver:
        """LangGraph's checkpoints of the runs, in the same storage."""
        ...

    async def create(
        self,
        run_id: str,
        question: str,
        request: dict[str, Any],
        *,
        lease_s: float,
        completion_budget: int | None = None,
        owned: bool = True,
        key_hash: str | None = None,
        grant: Grant | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> RunRecord:
        """Store a new queued run, owned by this process (or, not ``owned``, by none: it waits
        for any process to claim it), committed before it returns; raises
        StorageUnavailable. ``key_hash`` names the API key it belongs to.

        In the same transaction, serialized with every other creation for the same key on any
        process: ``grant`` decides the stored request from the key's ``Spend``; with
        ``idempotency``, a run made within ``IDEMPOTENCY_TTL_S`` under the same key is returned
        instead of a new one (IdempotencyKeyReused if it came from another request)."""
        ...

    def append(self, event: Event, committed: Callable[[], None] | None = None) -> None:
        """Queue one event for the writer; ``committed`` is called once it is stored."""
        ...

    def set_status(self, run_id: str, status: Status) -> None:
        """Queue a status change for the writer."""
        ...

    async def finish(self, run_id: str, status: Status, result: Result, event: Event) -> None:
        """Queue the final status, result and terminal event (one transaction), and drop the
        call outputs and checkpoints kept for resuming; return once they are committed,
        however many retries that takes."""
        ...

    def record_call(self, run_id: str, seq: int, row: CallRecord, output: str | None) -> None:
        """Queue one row of the run's durable ledger (a call that started or ended); ``output``
        is kept until the run ends, so that a resumed run need not make the call again."""
        ...

    async def calls(self, run_id: str) -> list[Entry]:
        """The run's ledger; calls still in flight (their process is gone) are stored as
        interrupted, ``estimated``, with the tokens their process counted (the prompt, and what
        they had streamed), before they are returned."""
        ...

    async def renew(self, lease_s: float) -> set[str]:
        """Extend the leases of every unfinished run this process owns; returns their ids (a
        run missing from them was taken over by another process). Writes that follow a run
        (events, status, ledger, its end) apply only while this process owns it."""
        ...

    async def claim(
        self, lease_s: float, *, limit: int | None = None, run_id: str | None = None
    ) -> list[Claim]:
        """Take over unfinished runs that have no owner, or whose owner is gone (lease expired,
        or its process known to have exited), oldest first: at most ``limit``, or only
        ``run_id``. A claim from an owner that is gone counts in ``Claim.resumes``. After this
        process lost the store, expired leases wait until it has been back a while
        (``api.storage.leases.StoreContact``): their owners may be alive, and renewing."""
        ...

    def holds(self, run_id: str) -> bool:
        """Whether this process surely still holds the run's lease, by its own clock (see
        ``api.storage.leases``): false once the lease may have lapsed, or was lost, or given up."""
        ...

    async def queued(self) -> int:
        """How many runs wait to start, in every process."""
        ...

    async def request_cancel(self, run_id: str) -> bool:
        """Mark an unfinished run to be cancelled by its owner (it sees it in
        ``cancel_requested``); False if the run has finished."""
        ...

    async def cancel_requested(self) -> set[str]:
        """This process's unfinished runs that a caller asked to cancel."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers and takes writes now."""
        ...

    async def release(self, run_ids: list[str]) -> None:
        """Give these runs up now (no owner, no lease), so that the next process, or this one's
        next round, takes them up at once; a release is not counted as a crash."""
        ...

    async def delete_before(self, cutoff: str) -> int:
        """Delete finished runs last updated before ``cutoff`` (ISO time), with their events,
        ledger and checkpoints; returns how many."""
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

    async def usage(self, key_hash: str | None, since: str, until: str) -> list[UsageDay]:
        """Per day from ``since`` to ``until`` (dates, both included), the runs of the key
        ``key_hash`` (None: runs made without one), days without runs left out."""
        ...

    async def recent(
        self, limit: int, before: str | None = None, *, key_hash: str | None = None
    ) -> list[RunRecord]:
        """Newest first; ``before`` is the id of the last run of the previous page; with
        ``key_hash``, only that key's runs."""
        ...

    async def close(self) -> None:
        """Commit what is queued (briefly; what cannot be committed is logged) and close."""
        ...
