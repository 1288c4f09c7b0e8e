"""The embedded run store: one SQLite file in DATA_DIR, in WAL mode, used off the event loop.

Each connection lives on its own thread: one for writes (the writer batches queued writes into
transactions), one for reads. Nothing here calls SQLite on the event loop.
"""

import asyncio
import functools
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from api.store import REPLAY_PAGE, TERMINAL, Event, RunRecord, Status, StorageUnavailable
from graph import Result
from graph.events import RUN_INTERRUPTED, EventData, EventName, RunEnded

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    question TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    result TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
"""

BUSY_TIMEOUT_MS = 5000
WAL_CHECKPOINT_PAGES = 16
WAL_SIZE_LIMIT = 65536
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
FAILURE_LOG_EVERY_S = 30.0
"""A write that keeps failing is logged at most this often."""

OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""Which process runs a run; another process on the same DATA_DIR leaves it alone while it lives."""

Statement = tuple[str, tuple[Any, ...]]

INSERT_EVENT = "INSERT OR IGNORE INTO events (run_id, seq, event, data) VALUES (?,?,?,?)"


def _alive(owner: str | None) -> bool:
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    """Compact JSON that SQLite can store: a lone surrogate in model output (not UTF-8) is
    replaced rather than failing the write."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "replace").decode("utf-8")


def _event_row(event: Event) -> Statement:
    return INSERT_EVENT, (event.run_id, event.id, event.event, _dumps(event.data))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return db


@dataclass
class _Write:
    statements: list[Statement]
    done: asyncio.Future[None] | None = None


@dataclass
class _Queue:
    writes: list[_Write] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class SQLiteRunStore:
    """``store = SQLiteRunStore(path); await store.open()`` … ``await store.close()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.healthy = True
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._wdb: sqlite3.Connection | None = None
        self._rdb: sqlite3.Connection | None = None
        self._queue = _Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_failure_log = -FAILURE_LOG_EVERY_S

    async def open(self) -> None:
        """Create the file and schema if needed; raises StorageUnavailable if it cannot."""
        try:
            await self._on(self._writer, self._open_writer)
            self._rdb = await self._on(self._reader, lambda: _connect(self.path))
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._queue.idle.set()
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = _connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint the write-ahead log early and keep it short: with SQLite's defaults (4 MB)
        # the log alone can fill a small DATA_DIR while the database holds a few KB.
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        db.executescript(SCHEMA)
        self._wdb = db

    @staticmethod
    async def _on(executor: ThreadPoolExecutor, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    # Writes ---------------------------------------------------------------------------------

    def _transaction(self, statements: Iterable[Statement]) -> None:
        db = self._wdb
        assert db is not None, "the store is not open"
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back by itself (disk full)
                db.execute("ROLLBACK")
            raise

    def _enqueue(self, statements: list[Statement], *, wait: bool = False) -> asyncio.Future[None] | None:
        done = asyncio.get_running_loop().create_future() if wait else None
        self._queue.writes.append(_Write(statements, done))
        self._queue.idle.clear()
        self._queue.ready.set()
        return done

    async def _write_loop(self) -> None:
        queue = self._queue
        while True:
            await queue.ready.wait()
            queue.ready.clear()
            batch, queue.writes = queue.writes, []
            commit = functools.partial(self._transaction, [s for w in batch for s in w.statements])
            delay = RETRY_FIRST_S
            while True:
                try:
                    await self._on(self._writer, commit)
                    break
                except sqlite3.Error as exc:  # storage: retried until it clears
                    self._failed(exc, len(batch))
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                except Exception:  # a bug: retrying cannot help, and the writer must go on
                    log.exception(
                        "the run store dropped a batch it cannot write", extra={"writes": len(batch)}
                    )
                    break
            if not self.healthy:
                log.warning("the run store accepts writes again")
                self._last_failure_log = -FAILURE_LOG_EVERY_S
            self.healthy = True
            for write in batch:
                if write.done is not None and not write.done.done():
                    write.done.set_result(None)
            if not queue.writes:
                queue.idle.set()

    def _failed(self, exc: sqlite3.Error, size: int) -> None:
        self.healthy = False
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.error(
                "the run store cannot write; retrying",
                extra={"error": str(exc), "queued_writes": size + len(self._queue.writes)},
            )

    async def create(self, run_id: str, question: str, request: dict[str, Any]) -> RunRecord:
        if not self.healthy:
            raise StorageUnavailable("the run store is failing to write")
        now = _now()
        statement: Statement = (
            "INSERT INTO runs (id, status, question, request, created_at, updated_at, owner) "
            "VALUES (?,?,?,?,?,?,?)",
            (run_id, "queued", question, _dumps(request), now, now, OWNER),
        )
        try:
            await self._on(self._writer, lambda: self._transaction([statement]))
        except sqlite3.Error as exc:
            self._failed(exc, 0)
            # Something must write to find out when storage is back: the writer retries this.
            self._enqueue([("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (_now(),))])
            raise StorageUnavailable(f"cannot store the run: {exc}") from exc
        return RunRecord(run_id, "queued", question, request, now, now, None)

    def append(self, event: Event) -> None:
        self._enqueue([_event_row(event)])

    def set_status(self, run_id: str, status: Status) -> None:
        self._enqueue([("UPDATE runs SET status=?, updated_at=? WHERE id=?", (status, _now(), run_id))])

    async def finish(self, run_id: str, status: Status, result: Result, event: Event) -> None:
        done = self._enqueue(
            [
                _event_row(event),
                (
                    "UPDATE runs SET status=?, updated_at=?, result=? WHERE id=?",
                    (status, _now(), _dumps(result), run_id),
                ),
            ],
            wait=True,
        )
        assert done is not None
        await asyncio.shield(done)

    async def flush(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._queue.idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # Reads ----------------------------------------------------------------------------------

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        db = self._rdb
        assert db is not None, "the store is not open"
        try:
            return await self._on(self._reader, lambda: db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot read the run store: {exc}") from exc

    async def get(self, run_id: str) -> RunRecord | None:
        rows = await self._read("SELECT * FROM runs WHERE id=?", (run_id,))
        return self._record(rows[0]) if rows else None

    async def events(self, run_id: str, after: int = 0, limit: int = REPLAY_PAGE) -> list[Event]:
        rows = await self._read(
            "SELECT seq, event, data FROM events WHERE run_id=? AND seq>? ORDER BY seq LIMIT ?",
            (run_id, after, limit),
        )
        return [
            Event(seq, run_id, cast(EventName, name), cast(EventData, json.loads(data)))
            for seq, name, data in rows
        ]

    async def last_event_id(self, run_id: str) -> int:
        rows = await self._read("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id=?", (run_id,))
        return int(rows[0][0])

    async def recent(self, limit: int, before: str | None = None) -> list[RunRecord]:
        if before is None:
            rows = await self._read("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
        else:
            rows = await self._read(
                "SELECT * FROM runs WHERE (created_at, id) < "
                "(SELECT created_at, id FROM runs WHERE id=?) "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (before, limit),
            )
        return [self._record(row) for row in rows]

    async def interrupt_unfinished(self) -> list[str]:
        placeholders = ",".join("?" * len(TERMINAL))
        rows = await self._read(
            f"SELECT id, owner FROM runs WHERE status NOT IN ({placeholders})", tuple(TERMINAL)
        )
        ids = [run_id for run_id, owner in rows if not _alive(owner)]
        if not ids:
            return []
        statements: list[Statement] = []
        now = _now()
        for run_id in ids:
            last = await self.last_event_id(run_id)
            data = RunEnded(run_id=run_id, result=None, error=None)
            statements.append(_event_row(Event(last + 1, run_id, RUN_INTERRUPTED, data)))
            statements.append(
                ("UPDATE runs SET status='interrupted', updated_at=? WHERE id=?", (now, run_id))
            )
        try:
            await self._on(self._writer, lambda: self._transaction(statements))
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot mark unfinished runs: {exc}") from exc
        return ids

    async def close(self, timeout_s: float = 5.0) -> None:
        if self._task is not None:
            if not await self.flush(timeout_s):
                lost = len(self._queue.writes)
                log.error("the run store closed with writes it could not commit", extra={"writes": lost})
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for executor, db in ((self._writer, self._wdb), (self._reader, self._rdb)):
            if db is not None:
                await self._on(executor, db.close)
            executor.shutdown(wait=True)
        self._wdb = self._rdb = None

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord:
        run_id, status, question, request, created_at, updated_at, result, _owner = row
        return RunRecord(
            id=run_id,
            status=cast(Status, status),
            question=question,
            request=json.loads(request),
            created_at=created_at,
            updated_at=updated_at,
            result=None if result is None else cast(Result, json.loads(result)),
        )
