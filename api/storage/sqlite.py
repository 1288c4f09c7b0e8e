"""The embedded run store: one SQLite file in DATA_DIR, in WAL mode, used off the event loop;
LangGraph's SQLite checkpointer keeps its tables (``checkpoints``, ``writes``) in the same file.

Its connections live on threads of their own (``api.storage.sqlite_connections``): the writer
batches queued writes into transactions. Nothing here calls SQLite on the event loop.

Ownership: every process that opens the store is an instance (``api.storage.instance_lock``).
A run belongs to the instance whose lease on it is current; a lease that expired, or whose
instance's lock can be taken, lets another instance claim the run.
"""

import functools
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from api.storage.batch_writer import BatchWriter, Statement
from api.storage.checkpoints import BestEffortSaver
from api.storage.instance_lock import InstanceLock
from api.storage.interface import (
    Claim,
    Grant,
    IdempotencyKey,
    RunRecord,
    Spend,
    StorageUnavailable,
    UsageDay,
    to_json,
    to_text,
)
from api.storage.leases import LocalLeases, StoreContact
from api.storage.sql import OWNED_UNFINISHED, RUN_COLUMNS, UNFINISHED, Dialect, SQLRunStore
from api.storage.sqlite_connections import PRAGMAS, SQLiteConnections
from api.storage.sqlite_schema import migrate
from graph.journal import INTERRUPTED, Entry

T = TypeVar("T")

CHECKPOINT_BUSY_TIMEOUT_S = 1.0
"""Checkpoint writes are best-effort (see api.storage.checkpoints): one that cannot get the database
soon is given up rather than hold up the run."""

SPEND = """
SELECT COALESCE(SUM(created_at >= :minute), 0),
    MIN(CASE WHEN created_at >= :minute THEN created_at END),
    COALESCE(SUM(CASE WHEN created_at >= :day THEN CASE WHEN result IS NULL
        THEN COALESCE(json_extract(request, '$.token_budget'), 0)
        ELSE json_extract(result, '$.usage.total_tokens') END END), 0),
    COALESCE(SUM(CASE WHEN created_at >= :day THEN CASE WHEN result IS NULL
        THEN COALESCE(json_extract(request, '$.cost_budget_usd'), 0)
        ELSE COALESCE(json_extract(result, '$.usage.cost_usd'), 0) END END), 0)
FROM runs WHERE key_hash = :key AND created_at >= min(:minute, :day)
"""
"""A key's ``Spend`` (see ``api.runs.quotas``): its runs of the last minute, and of today (UTC)."""

INSERT_RUN = (
    "INSERT INTO runs (id, status, question, request, created_at, updated_at, owner, "
    "lease_until, completion_budget, key_hash) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
INTERRUPT_CALLS = (
    "UPDATE calls SET row=json_set(row, '$.error', ?, '$.estimated', json('true')), "
    "in_flight=0 WHERE run_id=? AND in_flight=1"
)
"""Calls still in flight when their process died: interrupted, their tokens estimated."""
USAGE = (
    "SELECT substr(created_at, 1, 10) AS day, COUNT(*), "
    "COALESCE(SUM(json_extract(result, '$.usage.total_tokens')), 0), "
    "SUM(json_extract(result, '$.usage.cost_usd')) "
    "FROM runs WHERE key_hash IS ? AND created_at >= ? AND created_at < date(?, '+1 day') "
    "GROUP BY day ORDER BY day"
)
"""Per day (UTC), a key's runs and what the finished ones spent."""

NOW = "((julianday('now') - 2440587.5) * 86400.0)"
"""``time.time()`` in SQL: when the statement runs, not when it was queued."""


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds")


SQLITE = Dialect(
    mark="?",
    among=lambda column, values: (f"{column} IN ({','.join('?' * len(values))})", tuple(values)),
    clock=lambda offset_s: ("?", (_iso(time.time() + offset_s),)),
    lease_end=f"{NOW} + ?",
    text=to_text,
    time_text=str,
)
"""Timestamps are ISO text by this process's clock; leases are epoch seconds."""


def _spend(db: sqlite3.Connection, key_hash: str | None, now: float) -> Spend:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    params = {"key": key_hash, "minute": _iso(now - 60), "day": day.isoformat(timespec="microseconds")}
    requests, first, tokens, cost = db.execute(SPEND, params).fetchone()
    frees_in = 60 - (now - datetime.fromisoformat(first).timestamp()) if first else 0.0
    return Spend(int(requests), frees_in, int(tokens), float(cost), day.timestamp() + 86400 - now)


def _take_over(
    db: sqlite3.Connection,
    *,
    me: str,
    gone: Callable[[str | None], bool],
    lease_s: float,
    expired: bool,
    limit: int | None,
    run_id: str | None,
) -> list[sqlite3.Row]:
    """``SQLiteRunStore.claim``'s transaction: unfinished runs of no owner, or of an owner whose
    lease expired (taken only if ``expired`` may be) or who is ``gone``; each with ``resumes``."""
    now = time.time()
    candidates = db.execute(
        f"SELECT id, owner, lease_until FROM runs WHERE status IN {UNFINISHED} "
        "AND (? IS NULL OR id=?) ORDER BY created_at",
        (run_id, run_id),
    ).fetchall()
    taken = [
        candidate
        for candidate, owner, lease_until in candidates
        if owner != me
        and (owner is None or (expired and (lease_until is None or lease_until < now)) or gone(owner))
    ][:limit]
    rows = []
    for taken_id in taken:
        # A run given up on purpose (no owner: a shutdown, a failed take-up) is no crash.
        db.execute(
            "UPDATE runs SET owner=?, lease_until=?, resumes=resumes + (owner IS NOT NULL) WHERE id=?",
            (me, now + lease_s, taken_id),
        )
        rows.append(db.execute(f"SELECT {RUN_COLUMNS}, resumes FROM runs WHERE id=?", (taken_id,)).fetchone())
    return rows


class SQLiteRunStore(SQLRunStore):
    """``store = SQLiteRunStore(path); await store.open()`` … ``await store.close()``."""

    shared = False
    dialect = SQLITE
    checkpoint_errors = (OSError, sqlite3.Error)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.instance = InstanceLock(path.parent / "instances")
        self._saver: AsyncSqliteSaver | None = None
        self._checkpointer: BestEffortSaver | None = None
        self._db = SQLiteConnections(path)
        self._writes = BatchWriter(self._commit, (sqlite3.Error,))
        self._leases = LocalLeases()
        self._contact = StoreContact()

    async def open(self) -> None:
        """Create the file and schema if needed; raises StorageUnavailable if it cannot."""
        try:
            await self._db.open(self._prepare)
            connection = aiosqlite.connect(self.path, timeout=CHECKPOINT_BUSY_TIMEOUT_S)
            self._saver = AsyncSqliteSaver(await connection)
            await self._saver.setup()
            for pragma in PRAGMAS:
                await self._saver.conn.execute(f"PRAGMA {pragma}")
            self._checkpointer = BestEffortSaver(
                self._saver, (OSError, sqlite3.Error), after_failure=self._saver.conn.rollback
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._writes.start()

    def _prepare(self, db: sqlite3.Connection) -> None:
        migrate(db)
        self.instance.acquire()

    @property
    def owner(self) -> str:
        return self.instance.name

    @property
    def checkpointer(self) -> BestEffortSaver:
        assert self._checkpointer is not None, "the store is not open"
        return self._checkpointer

    # Writes ---------------------------------------------------------------------------------

    def _atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one write transaction, on the writer's connection (its thread)."""
        return self._db.atomically(work)

    def _transaction(self, statements: Iterable[Statement]) -> None:
        def execute(db: sqlite3.Connection) -> None:
            for sql, params in statements:
                db.execute(sql, params)

        self._atomically(execute)

    async def _write(self, work: Callable[[], T]) -> T:
        """``work`` on the writer's thread, noting whether the store could be written."""
        try:
            done = await self._db.on_writer(work)
        except sqlite3.Error:
            self._contact.lost()
            raise
        self._contact.reached()
        return done

    async def _commit(self, statements: list[Statement]) -> None:
        await self._write(functools.partial(self._transaction, statements))

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
        if not self.healthy:
            raise StorageUnavailable("the run store is failing to write")

        def insert(db: sqlite3.Connection) -> RunRecord:
            now = time.time()
            if idempotency is not None:
                earlier = db.execute(*self._earlier(idempotency)).fetchone()
                if (record := self._earlier_run(earlier, idempotency)) is not None:
                    return record
            stored = request if grant is None else grant(_spend(db, key_hash, now))
            at = _iso(now)
            db.execute(
                INSERT_RUN,
                (
                    run_id,
                    "queued",
                    question,
                    to_json(stored),
                    at,
                    at,
                    self.owner if owned else None,
                    now + lease_s if owned else None,
                    completion_budget,
                    key_hash,
                ),
            )
            for sql, params in self._remember(idempotency, run_id):
                db.execute(sql, params)
            return RunRecord(run_id, "queued", question, stored, at, at, None, completion_budget, key_hash)

        sent = time.monotonic()
        try:
            record = await self._write(functools.partial(self._atomically, insert))
        except sqlite3.Error as exc:
            self._writes.failed(exc, 0)
            # Something must write to find out when storage is back: the writer retries this.
            self._writes.enqueue(
                [("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (_iso(time.time()),))]
            )
            raise StorageUnavailable(f"cannot store the run: {exc}") from exc
        if owned and record.id == run_id:
            self._leases.taken([run_id], sent, lease_s)
        return record

    async def calls(self, run_id: str) -> list[Entry]:
        def settle() -> list[sqlite3.Row]:
            self._transaction([(INTERRUPT_CALLS, (INTERRUPTED, run_id))])
            return self._db.written(*self._calls(run_id))

        try:
            rows = await self._db.on_writer(settle)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot read the run's calls: {exc}") from exc
        return [self._entry(row) for row in rows]

    async def renew(self, lease_s: float) -> set[str]:
        sent = time.monotonic()
        await self._writes.write([self._renewal(lease_s)])
        owned = {row["id"] for row in await self._query(OWNED_UNFINISHED, (self.owner,))}
        self._leases.renewed(owned, sent, lease_s)
        return owned

    async def claim(
        self, lease_s: float, *, limit: int | None = None, run_id: str | None = None
    ) -> list[Claim]:
        take = functools.partial(
            _take_over,
            me=self.owner,
            gone=self.instance.gone,
            lease_s=lease_s,
            expired=self._contact.may_claim_expired(lease_s),
            limit=limit,
            run_id=run_id,
        )

        sent = time.monotonic()
        try:
            rows = await self._write(functools.partial(self._db.atomically, take))
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot claim runs: {exc}") from exc
        self._leases.taken([row["id"] for row in rows], sent, lease_s)
        return [Claim(self._record(row), row["resumes"]) for row in rows]

    async def request_cancel(self, run_id: str) -> bool:
        """Not kept: the store is not shared, and a process cancels only its own runs."""
        return False

    async def cancel_requested(self) -> set[str]:
        return set()

    async def ping(self) -> bool:
        return self.healthy

    # Reads ----------------------------------------------------------------------------------

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        try:
            return await self._db.read(sql, params)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot read the run store: {exc}") from exc

    async def usage(self, key_hash: str | None, since: str, until: str) -> list[UsageDay]:
        rows = await self._query(USAGE, (key_hash, since, until))
        return [UsageDay(day, runs, int(tokens), cost) for day, runs, tokens, cost in rows]

    async def close(self, timeout_s: float = 5.0) -> None:
        await self._writes.close(timeout_s)
        if self._saver is not None:
            await self._saver.conn.close()
            self._saver = None
        await self._db.on_writer(self.instance.release)
        await self._db.close()
