"""The SQL both run stores speak, written once: each store describes its ``Dialect`` and runs
the statements of ``RunSQL`` (each its SQL and parameters) on connections of its own.

The dialects differ in how a parameter is marked, how a column is matched against a list, and
where the clock comes from: Postgres keeps timestamps and leases by its own clock; SQLite keeps
timestamps by the writing process's clock (bound when a write is queued) and leases as epoch
seconds by its own clock (when the statement runs)."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from api.storage.batch_writer import Statement
from api.storage.interface import (
    IDEMPOTENCY_TTL_S,
    TERMINAL,
    Event,
    IdempotencyKey,
    IdempotencyKeyReused,
    RunRecord,
    Status,
    to_json,
)
from graph import CallRecord, Result
from graph.events import EventData, EventName
from graph.journal import IN_FLIGHT, Entry

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


class RunSQL:
    """The statements both stores share, in one dialect, and what their rows map to."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def _sql(self, template: str, **fragments: str) -> str:
        return template.replace("?", self.dialect.mark).format(**fragments)

    def _text(self, value: str | None) -> str | None:
        return None if value is None else self.dialect.text(value)

    # Writes that follow a run ---------------------------------------------------------------

    def insert_event(self, event: Event, owner: str) -> Statement:
        data = self.dialect.text(to_json(event.data))
        return self._sql(INSERT_EVENT), (event.run_id, event.id, event.event, data, event.run_id, owner)

    def insert_call(
        self, run_id: str, seq: int, row: CallRecord, output: str | None, owner: str
    ) -> Statement:
        in_flight = row["error"] == IN_FLIGHT
        params = (run_id, seq, self._text(to_json(row)), self._text(output), in_flight, run_id, owner)
        return self._sql(INSERT_CALL), params

    def set_status(self, run_id: str, status: Status, owner: str) -> Statement:
        now, at = self.dialect.clock(0)
        return self._sql(SET_STATUS, now=now), (status, *at, run_id, owner)

    def finish(
        self, run_id: str, status: Status, result: Result, event: Event, owner: str
    ) -> list[Statement]:
        """The terminal event, the call outputs kept for resuming dropped, the run's end."""
        now, at = self.dialect.clock(0)
        return [
            self.insert_event(event, owner),
            (self._sql(DROP_OUTPUTS), (run_id, run_id, owner)),
            (self._sql(END, now=now), (status, *at, self._text(to_json(result)), run_id, owner)),
        ]

    def release(self, run_ids: Sequence[str], owner: str) -> Statement:
        ids, params = self.dialect.among("id", run_ids)
        return self._sql(RELEASE, ids=ids), (owner, *params)

    def renew(self, lease_s: float, owner: str) -> Statement:
        return self._sql(RENEW, lease_end=self.dialect.lease_end), (lease_s, owner)

    def delete(self, run_ids: Sequence[str]) -> list[Statement]:
        """Runs with their events and ledger."""
        statements = []
        for table, column in (("events", "run_id"), ("calls", "run_id"), ("runs", "id")):
            ids, params = self.dialect.among(column, run_ids)
            statements.append((f"DELETE FROM {table} WHERE {ids}", params))
        return statements

    # Idempotency ----------------------------------------------------------------------------

    def earlier(self, key: IdempotencyKey) -> Statement:
        since, at = self.dialect.clock(-IDEMPOTENCY_TTL_S)
        return self._sql(EARLIER, since=since), (key.scope, *at)

    def earlier_run(self, row: Row | None, key: IdempotencyKey) -> RunRecord | None:
        """The run of ``earlier``'s row; IdempotencyKeyReused if it came from another request."""
        if row is None:
            return None
        if row["fingerprint"] != key.fingerprint:
            raise IdempotencyKeyReused(key.scope)
        return self.record(row)

    def remember(self, key: IdempotencyKey, run_id: str) -> list[Statement]:
        """The key names the run from now (and expired keys are forgotten)."""
        expired, before = self.dialect.clock(-IDEMPOTENCY_TTL_S)
        now, at = self.dialect.clock(0)
        return [
            (self._sql(FORGET_KEYS, expired=expired), (key.scope, *before)),
            (self._sql(REMEMBER_KEY, now=now), (key.scope, key.fingerprint, run_id, *at)),
        ]

    # Reads ----------------------------------------------------------------------------------

    def get(self, run_id: str) -> Statement:
        return self._sql(f"SELECT {RUN_COLUMNS} FROM runs WHERE id=?"), (run_id,)

    def owned_unfinished(self, owner: str) -> Statement:
        return self._sql(OWNED_UNFINISHED), (owner,)

    def queued(self) -> Statement:
        return "SELECT count(*) AS n FROM runs WHERE status='queued'", ()

    def calls(self, run_id: str) -> Statement:
        return self._sql("SELECT seq, row, output FROM calls WHERE run_id=? ORDER BY seq"), (run_id,)

    def events(self, run_id: str, after: int, limit: int) -> Statement:
        sql = "SELECT seq, event, data FROM events WHERE run_id=? AND seq>? ORDER BY seq LIMIT ?"
        return self._sql(sql), (run_id, after, limit)

    def last_event_id(self, run_id: str) -> Statement:
        return self._sql("SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE run_id=?"), (run_id,)

    def finished_before(self, cutoff: str) -> Statement:
        return self._sql(f"SELECT id FROM runs WHERE status IN {FINISHED} AND updated_at < ?"), (cutoff,)

    def recent(self, limit: int, before: str | None, key_hash: str | None) -> Statement:
        return self._sql(RECENT), (key_hash, key_hash, before, before, limit)

    # Rows -----------------------------------------------------------------------------------

    def record(self, row: Row) -> RunRecord:
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

    @staticmethod
    def event(run_id: str, row: Row) -> Event:
        return Event(
            row["seq"], run_id, cast(EventName, row["event"]), cast(EventData, json.loads(row["data"]))
        )

    @staticmethod
    def entry(row: Row) -> Entry:
        return Entry(row["seq"], cast(CallRecord, json.loads(row["row"])), row["output"])
