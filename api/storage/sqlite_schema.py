"""The SQLite schema, as versioned steps, and the runner that applies them when the store opens."""

import sqlite3

from api.storage.sqlite_connections import immediate

MIGRATIONS: tuple[str, ...] = (
    """
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
    """,
    """
    ALTER TABLE runs ADD COLUMN lease_until REAL;
    ALTER TABLE runs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN completion_budget INTEGER;
    CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
    CREATE INDEX runs_by_updated ON runs (updated_at);
    CREATE TABLE calls (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        row TEXT NOT NULL,
        output TEXT,
        in_flight INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE runs ADD COLUMN key_hash TEXT;
    CREATE INDEX runs_by_key ON runs (key_hash, created_at);
    """,
    """
    CREATE TABLE idempotency (
        scope TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_created ON idempotency (created_at);
    """,
)
"""The schema, one step per version (``PRAGMA user_version`` is the steps applied). The first
step is the schema as it was before versions, so a database of that time upgrades in place."""


def migrate(db: sqlite3.Connection) -> None:
    """Apply the steps this database lacks, in one transaction (a second process starting at
    the same time waits, then finds nothing to do)."""
    with immediate(db):
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for step, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={step}")
