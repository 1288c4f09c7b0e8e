"""The embedded store's two connections to its file, each living on a thread of its own: one
writes (in transactions taken at once), one reads. Nothing here calls SQLite on the event loop."""

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 2048
"""A commit writes each page it touches whole to the log, and a run's rows are a few hundred bytes
each, committed a few at a time: at 2 KB a run of 4 sub-questions writes 131 KB where 4 KB pages
wrote 184 KB (1 KB pages: 116 KB, but a finished run then keeps 19 KB instead of 12)."""
WAL_CHECKPOINT_PAGES = 1000
WAL_SIZE_LIMIT = 65536
PRAGMAS = (
    "synchronous=NORMAL",
    f"wal_autocheckpoint={WAL_CHECKPOINT_PAGES}",
    f"journal_size_limit={WAL_SIZE_LIMIT}",
)
"""For every connection that writes. The write-ahead log is checkpointed at SQLite's default size
(1000 pages, 2 MB; a checkpoint is what syncs the disk, commits in WAL mode with
synchronous=NORMAL do not) and truncated back to 64 KB after each, so it cannot fill a small
DATA_DIR while the database holds a few KB. At 16 pages it checkpointed every couple of commits:
9 fdatasync and 463 KB written per run of 4 sub-questions (``tests.bench.disk``)."""


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once; rolled back if anything in it fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back by itself (disk full)
            db.execute("ROLLBACK")
        raise


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return db


class SQLiteConnections:
    """``await connections.open(prepare)`` … ``await connections.close()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        self._wdb: sqlite3.Connection | None = None
        self._rdb: sqlite3.Connection | None = None

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Create the file if needed, and ``prepare`` it (on the writer's thread) before the
        reader connects."""
        await self.on_writer(lambda: prepare(self._open_writer()))
        self._rdb = await self._on(self._reader, lambda: connect(self.path))

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(self.path)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file's; an existing one keeps its own
        db.execute("PRAGMA journal_mode=WAL")
        for pragma in PRAGMAS:
            db.execute(f"PRAGMA {pragma}")
        self._wdb = db
        return db

    @staticmethod
    async def _on(executor: ThreadPoolExecutor, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    async def on_writer(self, work: Callable[[], T]) -> T:
        return await self._on(self._writer, work)

    def atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one write transaction, on the writer's connection (call on its thread)."""
        db = self._wdb
        assert db is not None, "the store is not open"
        with immediate(db):
            return work(db)

    def written(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        """A read on the writer's connection (call on its thread): it sees what was just written."""
        assert self._wdb is not None, "the store is not open"
        return self._wdb.execute(sql, params).fetchall()

    async def read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        db = self._rdb
        assert db is not None, "the store is not open"
        return await self._on(self._reader, lambda: db.execute(sql, params).fetchall())

    async def close(self) -> None:
        for executor, db in ((self._writer, self._wdb), (self._reader, self._rdb)):
            if db is not None:
                await self._on(executor, db.close)
            executor.shutdown(wait=True)
        self._wdb = self._rdb = None
