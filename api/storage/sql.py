"""The SQL both run stores speak, written once, and the operations that are nothing more: each
store (``SQLRunStore``'s subclasses) gives its ``Dialect`` and its connections.

The dialects differ in how a parameter is marked, how a column is matched against a list, and
where the clock comes from: Postgres keeps timestamps and leases by its own clock; SQLite keeps
timestamps by the writing process's clock (bound when a write is queued) and leases as epoch
seconds by its own clock (when the statement runs)."""

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from api.storage.batch_writer import BatchWriter, Statement
from api.storage.checkpoints import BestEffortSaver
from api.storage.interface import (
    IDEMPOTENCY_TTL_S,
    REPLAY_PAGE,
    TERMINAL,
    Event,
    IdempotencyKey,
    IdempotencyKeyReused,
    RunRecord,
    Status,
    to_json,
)
from api.storage.leases import LocalLeases
from graph import CallRecord, Result
from graph.events import TERMINAL_EVENTS, EventData, EventName
from graph.journal import IN_FLIGHT, Entry

log = logging.getLogger(__name__)

RUN_COLUMNS = "id, status, question, request, created_at, updated_at, result, completion_budget, key_hash"
UNFINISHED = "('queued', 'running')"
FINISHED = f"({', '.join(repr(status) for status in sorted(TERMINAL))})"

OWNED = "EXISTS (SELECT 1 FROM runs WHERE id=? AND owner=?)"
"""Writes that follow a run apply only while this process owns it: one that lost its lease (it
was frozen past it, and another process took the run over) cannot write over the new owner."""

INSERT_EVENT = (
    f"INSERT INTO events (run_id, seq, event, data) SELECT ?,?,?,? WHERE {OWNED} ON CONFLICT DO NOTHING"
)
INSERT_CALL = (
    f"INSERT INTO calls (run_id, seq, row, output, in_flight) SELECT ?,?,?,?,? WHERE {OWNED} "
    "ON CONFLICT (run_id, seq) DO UPDATE SET row=excluded.row, output=excluded.output, "
    "in_flight=excluded.in_flight"
)
SET_STATUS = "UPDATE runs SET status=?, updated_at={now} WHERE id=? AND owner=?"
DROP_OUTPUTS = f"UPDATE calls SET output=NULL WHERE run_id=? AND {OWNED}"
END = "UPDATE runs SET status=?, updated_at={now}, result=?, lease_until=NULL WHERE id=? AND owner=?"
RELEASE = "UPDATE runs SET owner=NULL, lease_until=NULL WHERE owner=? AND {ids}"
RENEW = f"UPDATE runs SET lease_until={{lease_end}} WHERE owner=? AND status IN {UNFINISHED}"
FORGET_KEYS = "DELETE FROM idempotency WHERE scope=? OR created_at < {expired}"
REMEMBER_KEY = "INSERT INTO idempotency (scope, fingerprint, run_id, created_at) VALUES (?, ?, ?, {now})"
OWNED_UNFINISHED = f"SELECT id FROM runs WHERE owner=? AND status IN {UNFINISHED}"
RECENT = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE (CAST(? AS text) IS NULL OR key_hash = ?) "
    "AND (CAST(? AS text) IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id=?)) "
    "ORDER BY created_at DESC, id DESC LIMIT ?"
)
EARLIER = (
    f"SELECT i.fingerprint, {', '.join(f'r.{column}' for column in RUN_COLUMNS.split(', '))} "
    "FROM idempotency i JOIN runs r ON r.id = i.run_id WHERE i.scope=? AND i.created_at >= {since}"
)
"""The run an Idempotency-Key named within its time to live."""


class Row(Protocol):
    """A row read by column name (a dict from psycopg, a ``sqlite3.Row``)."""

    def __getitem__(self, column: str, /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases' SQL and what they keep."""

    mark: str
    """A parameter's placeholder, for the ``?`` the statements are written with."""
    among: Callable[[str, Sequence[Any]], Statement]
    """``column`` is one of ``values``."""
    clock: Callable[[float], Statement]
    """A run's timestamp ``offset_s`` from now."""
    lease_end: str
    """When a lease taken now for as many seconds as its one parameter ends."""
    text: Callable[[str], str]
    """Text as the database can keep it."""
    time_text: Callable[[Any], str]
    """A stored timestamp as ISO text."""


class SQLRunStore(ABC):
    """A ``RunStore`` in SQL: a subclass sets ``dialect`` and the errors its checkpointer raises,
    and supplies the owner's name, the writer, the leases and one statement's rows."""

    dialect: ClassVar[Dialect]
    checkpoint_errors: ClassVar[tuple[type[Exception], ...]]
    _writes: BatchWriter
    _leases: LocalLeases

    @property
    @abstractmethod
    def owner(self) -> str:
        """This process's name in the ``owner`` column."""

    @property
    @abstractmethod
    def checkpointer(self) -> BestEffortSaver: ...

    @abstractmethod
    async def _query(self, sql: str, params: tuple[Any, ...]) -> Sequence[Row]:
        """The rows of one statement; raises StorageUnavailable."""

    def _sql(self, template: str, **fragments: str) -> str:
        """A statement written with ``?`` in this dialect, its ``{fragments}`` filled in."""
        return template.replace("?", self.dialect.mark).format(**fragments)

    def _text(self, value: str | None) -> str | None:
        return None if value is None else self.dialect.text(value)

    @property
    def healthy(self) -> bool:
        return self._writes.healthy

    def holds(self, run_id: str) -> bool:
        return self._leases.holds(run_id)

    # Writes that follow a run ---------------------------------------------------------------

    def _event_row(self, event: Event) -> Statement:
        data = self.dialect.text(to_json(event.data))
        return self._sql(INSERT_EVENT), (event.run_id, event.id, event.event, data, event.run_id, self.owner)

    def append(self, event: Event, committed: Callable[[], None] | None = None) -> None:
        self._writes.enqueue([self._event_row(event)], committed=committed)

    def set_status(self, run_id: str, status: Status) -> None:
        now, at = self.dialect.clock(0)
        self._writes.enqueue([(self._sql(SET_STATUS, now=now), (status, *at, run_id, self.owner))])

    def record_call(self, run_id: str, seq: int, row: CallRecord, output: str | None) -> None:
        in_flight = row["error"] == IN_FLIGHT
        params = (run_id, seq, self._text(to_json(row)), self._text(output), in_flight, run_id, self.owner)
        self._writes.enqueue([(self._sql(INSERT_CALL), params)])

    async def finish(self, run_id: str, status: Status, result: Result, event: Event) -> None:
        self._leases.dropped([run_id])
        now, at = self.dialect.clock(0)
        await self._writes.write(
            [
                self._event_row(_without_result(event)),
                (self._sql(DROP_OUTPUTS), (run_id, run_id, self.owner)),
                (self._sql(END, now=now), (status, *at, self._text(to_json(result)), run_id, self.owner)),
            ]
        )
        await self._forget_checkpoints([run_id])

    async def release(self, run_ids: list[str]) -> None:
        self._leases.dropped(run_ids)
        if run_ids:
            ids, params = self.dialect.among("id", run_ids)
            self._writes.enqueue([(self._sql(RELEASE, ids=ids), (self.owner, *params))])

    def _renewal(self, lease_s: float) -> Statement:
        """Every unfinished run this process owns, leased ``lease_s`` from now."""
        return self._sql(RENEW, lease_end=self.dialect.lease_end), (lease_s, self.owner)

    async def delete_before(self, cutoff: str) -> int:
        finished = self._sql(f"SELECT id FROM runs WHERE status IN {FINISHED} AND updated_at < ?")
        ids = [row["id"] for row in await self._query(finished, (cutoff,))]
        for start in range(0, len(ids), REPLAY_PAGE):
            chunk = ids[start : start + REPLAY_PAGE]
            deletes = []
            for table, column in (("events", "run_id"), ("calls", "run_id"), ("runs", "id")):
                among, params = self.dialect.among(column, chunk)
                deletes.append((f"DELETE FROM {table} WHERE {among}", params))
            await self._writes.write(deletes)
            await self._forget_checkpoints(chunk)
        return len(ids)

    async def _forget_checkpoints(self, run_ids: list[str]) -> None:
        """Checkpoints are for resuming: a finished run's are deleted (its result stays)."""
        try:
            for run_id in run_ids:
                await self.checkpointer.adelete_thread(run_id)
        except self.checkpoint_errors as exc:
            log.warning("could not delete a finished run's checkpoints", extra={"error": str(exc)})

    async def flush(self, timeout_s: float) -> bool:
        return await self._writes.flush(timeout_s)

    # Idempotency, in the transaction that creates a run -------------------------------------

    def _earlier(self, key: IdempotencyKey) -> Statement:
        since, at = self.dialect.clock(-IDEMPOTENCY_TTL_S)
        return self._sql(EARLIER, since=since), (key.scope, *at)

    def _earlier_run(self, row: Row | None, key: IdempotencyKey) -> RunRecord | None:
        """The run of ``_earlier``'s row; IdempotencyKeyReused if it came from another request."""
        if row is None:
            return None
        if row["fingerprint"] != key.fingerprint:
            raise IdempotencyKeyReused(key.scope)
        return self._record(row)

    def _remember(self, key: IdempotencyKey | None, run_id: str) -> list[Statement]:
        """The key names the run from now (and expired keys are forgotten)."""
        if key is None:
            return []
        expired, before = self.dialect.clock(-IDEMPOTENCY_TTL_S)
        now, at = self.dialect.clock(0)
        return [
            (self._sql(FORGET_KEYS, expired=expired), (key.scope, *before)),
            (self._sql(REMEMBER_KEY, now=now), (key.scope, key.fingerprint, run_id, *at)),
        ]

    # Reads ----------------------------------------------------------------------------------

    async def get(self, run_id: str) -> RunRecord | None:
        rows = await self._query(self._sql(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?"), (run_id,))
        return self._record(rows[0]) if rows else None

    async def events(self, run_id: str, after: int = 0, limit: int = REPLAY_PAGE) -> list[Event]:
        sql = self._sql("SELECT seq, event, data FROM events WHERE run_id=? AND seq>? ORDER BY seq LIMIT ?")
        rows = await self._query(sql, (run_id, after, limit))
        events = [
            Event(row["seq"], run_id, cast(EventName, row["event"]), cast(EventData, json.loads(row["data"])))
            for row in rows
        ]
        if events and events[-1].event in TERMINAL_EVENTS and "result" not in events[-1].data:
            last = events[-1]
            stored = await self._query(self._sql("SELECT result FROM runs WHERE id=?"), (run_id,))
            result = stored[0]["result"] if stored else None
            data = {**last.data, "result": None if result is None else json.loads(result)}
            events[-1] = Event(last.id, run_id, last.event, cast(EventData, data))
        return events

    async def last_event_id(self, run_id: str) -> int:
        sql = self._sql("SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE run_id=?")
        return int((await self._query(sql, (run_id,)))[0]["last"])

    async def queued(self) -> int:
        return int((await self._query("SELECT count(*) AS n FROM runs WHERE status='queued'", ()))[0]["n"])

    async def recent(
        self, limit: int, before: str | None = None, *, key_hash: str | None = None
    ) -> list[RunRecord]:
        rows = await self._query(self._sql(RECENT), (key_hash, key_hash, before, before, limit))
        return [self._record(row) for row in rows]

    def _calls(self, run_id: str) -> Statement:
        return self._sql("SELECT seq, row, output FROM calls WHERE run_id=? ORDER BY seq"), (run_id,)

    @staticmethod
    def _entry(row: Row) -> Entry:
        return Entry(row["seq"], cast(CallRecord, json.loads(row["row"])), row["output"])

    def _record(self, row: Row) -> RunRecord:
        result = row["result"]
        return RunRecord(
            id=row["id"],
            status=cast(Status, row["status"]),
            question=row["question"],
            request=json.loads(row["request"]),
            created_at=self.dialect.time_text(row["created_at"]),
            updated_at=self.dialect.time_text(row["updated_at"]),
            result=None if result is None else cast(Result, json.loads(result)),
            completion_budget=row["completion_budget"],
            key_hash=row["key_hash"],
        )


def _without_result(event: Event) -> Event:
    """A terminal event as it is stored: its result is the run row's, read back from there (a
    result is kept once, not twice)."""
    data = {key: value for key, value in event.data.items() if key != "result"}
    return Event(event.id, event.run_id, event.event, cast(EventData, data))
