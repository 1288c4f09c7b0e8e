"""The Postgres schema, as versioned steps, and the runner that applies them at start.

Replicas that start together migrate once: the steps run under a session advisory lock, each in
its own transaction with its row in ``reasoner_migrations``; a replica that waited on the lock
finds them applied. LangGraph's checkpointer tables are set up under the same lock (its own
migrations are not safe to run twice at once)."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from psycopg import AsyncConnection

MIGRATION_LOCK = 0x726561736F6E6572 & 0x7FFFFFFFFFFFFFFF
"""The advisory lock key ("reasoner")."""

STEPS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id text PRIMARY KEY,
        status text NOT NULL,
        question text NOT NULL,
        request text NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        result text,
        completion_budget integer,
        owner text,
        lease_until timestamptz,
        resumes integer NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
    CREATE INDEX runs_unfinished ON runs (created_at) WHERE status IN ('queued', 'running');
    CREATE INDEX runs_by_updated ON runs (updated_at);
    CREATE TABLE events (
        run_id text NOT NULL,
        seq integer NOT NULL,
        event text NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE calls (
        run_id text NOT NULL,
        seq integer NOT NULL,
        row text NOT NULL,
        output text,
        in_flight boolean NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """,
    """
    ALTER TABLE runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
    CREATE INDEX runs_by_owner ON runs (owner) WHERE status IN ('queued', 'running');
    """,
    """
    ALTER TABLE runs ADD COLUMN key_hash text;
    CREATE INDEX runs_by_key ON runs (key_hash, created_at);
    """,
    """
    CREATE TABLE idempotency (
        scope text PRIMARY KEY,
        fingerprint text NOT NULL,
        run_id text NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX idempotency_by_created ON idempotency (created_at);
    """,
)
"""Version N is ``STEPS[:N]``. Step 2: cancel requests kept in the run's row (a replica that
misses Redis's message still sees them), and an index for each replica's lease renewal. Step 3:
the API key (its hash) a run is accounted to. Step 4: Idempotency-Keys and the runs they name."""

Row = dict[str, Any]

LOCK_POLL_S = 0.1
"""A replica waiting for another's migration asks again this often. It does not block in
``pg_advisory_lock``: a waiting statement holds a snapshot, and LangGraph's migrations
(``CREATE INDEX CONCURRENTLY``) wait for every snapshot to end: the two would deadlock."""


async def _try_lock(conn: AsyncConnection[Row]) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (MIGRATION_LOCK,))
    row = await cursor.fetchone()
    return bool(row and row["locked"])


async def migrate(
    conn: AsyncConnection[Row],
    applied_by: str,
    *,
    steps: Sequence[str] = STEPS,
    also: Callable[[], Awaitable[None]] | None = None,
) -> list[int]:
    """Apply the steps the database lacks, then ``also`` (the checkpointer's setup), under the
    migration lock; returns the versions this call applied. ``conn`` is in autocommit mode."""
    while not await _try_lock(conn):
        await asyncio.sleep(LOCK_POLL_S)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS reasoner_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), "
            "applied_by text NOT NULL)"
        )
        cursor = await conn.execute("SELECT version FROM reasoner_migrations")
        done = {row["version"] for row in await cursor.fetchall()}
        applied = []
        for version, script in enumerate(steps, start=1):
            if version in done:
                continue
            async with conn.transaction():
                for statement in filter(str.strip, script.split(";")):
                    await conn.execute(statement.encode())
                await conn.execute(
                    "INSERT INTO reasoner_migrations (version, applied_by) VALUES (%s, %s)",
                    (version, applied_by),
                )
            applied.append(version)
        if also is not None:
            await also()
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
