"""The embedded run store: one SQLite file in DATA_DIR, in WAL mode."""

import json
import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from api.store import TERMINAL, Event, RunRecord, Status
from graph import Result

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
"""


OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""Which process runs a run; another process on the same DATA_DIR leaves it alone while it lives."""


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
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SQLiteRunStore:
    """Thread-safe; every write is its own transaction, so nothing is half-written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            if "owner" not in columns:
                self._db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def create(self, run_id: str, question: str, request: dict[str, Any]) -> RunRecord:
        now = _now()
        self._write(
            "INSERT INTO runs (id, status, question, request, created_at, updated_at, owner) "
            "VALUES (?,?,?,?,?,?,?)",
            (run_id, "queued", question, _dumps(request), now, now, OWNER),
        )
        return RunRecord(run_id, "queued", question, request, now, now, None)

    def set_status(self, run_id: str, status: Status) -> None:
        self._write("UPDATE runs SET status=?, updated_at=? WHERE id=?", (status, _now(), run_id))

    def finish(self, run_id: str, status: Status, result: Result | None) -> None:
        self._write(
            "UPDATE runs SET status=?, updated_at=?, result=? WHERE id=?",
            (status, _now(), None if result is None else _dumps(result), run_id),
        )

    def append(self, event: Event) -> None:
        self._write(
            "INSERT INTO events (run_id, seq, event, data) VALUES (?,?,?,?)",
            (event.run_id, event.id, event.event, _dumps(event.data)),
        )

    def get(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return None if row is None else self._record(row)

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event, data FROM events WHERE run_id=? AND seq>? ORDER BY seq",
                (run_id, after),
            ).fetchall()
        return [Event(seq, run_id, name, json.loads(data)) for seq, name, data in rows]

    def recent(self, limit: int, before: str | None = None) -> list[RunRecord]:
        with self._lock:
            if before is None:
                rows = self._db.execute(
                    "SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM runs WHERE (created_at, id) < "
                    "(SELECT created_at, id FROM runs WHERE id=?) "
                    "ORDER BY created_at DESC, id DESC LIMIT ?",
                    (before, limit),
                ).fetchall()
        return [self._record(row) for row in rows]

    def interrupt_unfinished(self) -> list[str]:
        placeholders = ",".join("?" * len(TERMINAL))
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, owner FROM runs WHERE status NOT IN ({placeholders})", tuple(TERMINAL)
            ).fetchall()
            ids = [run_id for run_id, owner in rows if not _alive(owner)]
            now = _now()
            self._db.execute("BEGIN")
            for run_id in ids:
                seq = self._db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id=?", (run_id,)
                ).fetchone()[0]
                self._db.execute(
                    "INSERT INTO events (run_id, seq, event, data) VALUES (?,?,?,?)",
                    (run_id, seq + 1, "run.interrupted", _dumps({"run_id": run_id})),
                )
                self._db.execute(
                    "UPDATE runs SET status='interrupted', updated_at=? WHERE id=?", (now, run_id)
                )
            self._db.execute("COMMIT")
        return ids

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
