"""The run store on Postgres, for several replicas: runs (which are also the queue), their
events, the durable ledger and LangGraph's checkpoints (langgraph-checkpoint-postgres) in one
database, through one psycopg connection pool.

A replica is an instance with a random id. A run belongs to the instance whose lease on it is
current; leases are timed by the database's clock, so replicas on machines whose clocks differ
agree on them. A run nobody owns (queued for a free slot, or given up by a shutdown) or whose
lease expired (its replica died) is claimed with ``FOR UPDATE SKIP LOCKED``: two replicas
claiming at once never take the same run.
"""

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import PoolTimeout

from api.storage.batch_writer import BatchWriter, Statement
from api.storage.checkpoints import BestEffortSaver
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
from api.storage.postgres_pool import CONNECT_TIMEOUT_S, connection_pool
from api.storage.postgres_schema import Row, migrate
from api.storage.sql import UNFINISHED, Dialect, SQLRunStore
from graph.journal import INTERRUPTED, Entry

log = logging.getLogger(__name__)

RETRYABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
"""Errors of the connection, not of the statement: the writer retries them."""
FAILURES: tuple[type[Exception], ...] = (psycopg.Error, PoolTimeout)

CLAIM = f"""
WITH picked AS (
    SELECT id FROM runs
    WHERE status IN {UNFINISHED}
      AND (owner IS NULL OR (%(expired)s AND lease_until < now()))
      AND owner IS DISTINCT FROM %(me)s
      AND (%(run_id)s::text IS NULL OR id = %(run_id)s::text)
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE runs SET owner = %(me)s, lease_until = now() + %(lease_s)s * interval '1 second',
    resumes = runs.resumes + (runs.owner IS NOT NULL)::int
FROM picked WHERE runs.id = picked.id
RETURNING runs.id, status, question, request, created_at, updated_at, result, completion_budget,
    key_hash, resumes, cancel_requested
"""
"""A run given up on purpose (no owner: queued, a shutdown, a failed take-up) is no crash. An
expired lease is taken only when ``expired`` (see ``api.storage.leases.StoreContact``)."""


TODAY = "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"

SPEND = f"""
SELECT count(*) FILTER (WHERE created_at >= now() - interval '1 minute') AS requests,
    COALESCE(extract(epoch FROM min(created_at) FILTER (WHERE created_at >= now() - interval '1 minute')
        + interval '1 minute' - now()), 0)::float8 AS frees_in,
    COALESCE(sum(CASE WHEN result IS NULL THEN COALESCE((request::jsonb ->> 'token_budget')::bigint, 0)
        ELSE (result::jsonb #>> '{{usage,total_tokens}}')::bigint END)
        FILTER (WHERE created_at >= {TODAY}), 0) AS tokens,
    COALESCE(sum(CASE WHEN result IS NULL THEN COALESCE((request::jsonb ->> 'cost_budget_usd')::float8, 0)
        ELSE COALESCE((result::jsonb #>> '{{usage,cost_usd}}')::float8, 0) END)
        FILTER (WHERE created_at >= {TODAY}), 0) AS cost,
    extract(epoch FROM {TODAY} + interval '1 day' - now())::float8 AS day_ends_in
FROM runs WHERE key_hash = %s AND created_at >= least({TODAY}, now() - interval '1 minute')
"""
"""A key's ``Spend`` (see ``api.runs.quotas``) by the database's clock: its runs of the last minute,
and of today (UTC)."""


USAGE = (
    "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS runs, "
    "COALESCE(sum((result::jsonb #>> '{usage,total_tokens}')::bigint), 0) AS tokens, "
    "sum((result::jsonb #>> '{usage,cost_usd}')::float8) AS cost "
    "FROM runs WHERE key_hash IS NOT DISTINCT FROM %s "
    "AND created_at >= %s::date::timestamp AT TIME ZONE 'UTC' "
    "AND created_at < (%s::date + 1)::timestamp AT TIME ZONE 'UTC' GROUP BY day ORDER BY day"
)
"""Per day (UTC), a key's runs and what the finished ones spent."""


def _spend(row: Row) -> Spend:
    return Spend(row["requests"], row["frees_in"], int(row["tokens"]), row["cost"], row["day_ends_in"])


def _text(value: str) -> str:
    """Postgres text holds neither NUL characters nor lone surrogates; model output can."""
    return to_text(value.replace("\x00", "\ufffd"))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _clock(offset_s: float) -> Statement:
    return ("now() + %s * interval '1 second'", (offset_s,)) if offset_s else ("now()", ())


POSTGRES = Dialect(
    mark="%s",
    among=lambda column, values: (f"{column} = ANY(%s)", (list(values),)),
    clock=_clock,
    lease_end="now() + %s * interval '1 second'",
    text=_text,
    time_text=_iso,
)
"""Timestamps and leases by the database's clock."""


class PostgresRunStore(SQLRunStore):
    """``store = PostgresRunStore(url); await store.open()`` … ``await store.close()``."""

    shared = True
    dialect = POSTGRES
    checkpoint_errors = FAILURES

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.instance = uuid.uuid4().hex
        self._pool = connection_pool(url, pool_size)
        self._saver = AsyncPostgresSaver(cast(Any, self._pool))
        self._checkpointer = BestEffortSaver(self._saver, FAILURES)
        self._writes = BatchWriter(self._commit, RETRYABLE)
        self._leases = LocalLeases()
        self._contact = StoreContact()

    async def open(self) -> list[int]:
        """Connect and migrate; returns the schema versions this call applied. Raises
        StorageUnavailable if the database cannot be reached."""
        try:
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            async with self._pool.connection() as conn:
                applied = await migrate(conn, self.instance, also=self._saver.setup)
        except FAILURES as exc:
            await self._pool.close()
            raise StorageUnavailable(f"cannot open the Postgres run store: {exc}") from exc
        if applied:
            log.info("migrated the run store", extra={"versions": applied})
        self._writes.start()
        return applied

    @property
    def owner(self) -> str:
        return self.instance

    @property
    def checkpointer(self) -> BestEffortSaver:
        return self._checkpointer

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except RETRYABLE as exc:
            self._contact.lost()
            raise StorageUnavailable(f"cannot {what}: {exc}") from exc
        except FAILURES as exc:
            raise StorageUnavailable(f"cannot {what}: {exc}") from exc
        self._contact.reached()

    async def _commit(self, statements: list[Statement]) -> None:
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.pipeline():
                for sql, params in statements:
                    await conn.execute(sql.encode(), params)
        except RETRYABLE:
            self._contact.lost()
            raise
        self._contact.reached()

    async def _query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Row]:
        """One statement that returns rows (a SELECT, or a write with RETURNING), on a pooled
        connection in autocommit mode."""
        async with self._connection("use the run store") as conn:
            cursor = await conn.execute(sql.encode(), params)
            return await cursor.fetchall()

    async def ping(self) -> bool:
        try:
            await self._query("SELECT 1")
        except StorageUnavailable:
            return False
        return self.healthy

    # Writes ---------------------------------------------------------------------------------

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
        sent = time.monotonic()
        async with self._connection("store the run") as conn, conn.transaction():
            if grant is not None or idempotency is not None:
                # Creations for one key wait for each other, on every replica, until commit.
                lock = key_hash if grant is not None else idempotency.scope if idempotency else ""
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
            if idempotency is not None:
                sql, params = self._earlier(idempotency)
                cursor = await conn.execute(sql.encode(), params)
                if (record := self._earlier_run(await cursor.fetchone(), idempotency)) is not None:
                    return record
            stored = request
            if grant is not None:
                spent = await (await conn.execute(SPEND.encode(), (key_hash,))).fetchone()
                assert spent is not None
                stored = grant(_spend(spent))
            cursor = await conn.execute(
                "INSERT INTO runs (id, status, question, request, created_at, updated_at, owner, "
                "lease_until, completion_budget, key_hash) VALUES (%s, 'queued', %s, %s, now(), now(), "
                "%s, CASE WHEN %s THEN now() + %s * interval '1 second' END, %s, %s) RETURNING created_at",
                (
                    run_id,
                    _text(question),
                    to_json(stored),
                    self.instance if owned else None,
                    owned,
                    lease_s,
                    completion_budget,
                    key_hash,
                ),
            )
            created = await cursor.fetchone()
            assert created is not None
            for sql, params in self._remember(idempotency, run_id):
                await conn.execute(sql.encode(), params)
        if owned:
            self._leases.taken([run_id], sent, lease_s)
        at = _iso(created["created_at"])
        return RunRecord(run_id, "queued", question, stored, at, at, None, completion_budget, key_hash)

    async def calls(self, run_id: str) -> list[Entry]:
        async with self._connection("read the run's calls") as conn, conn.transaction():
            await conn.execute(
                "UPDATE calls SET row=(row::jsonb || jsonb_build_object('error', %s::text, "
                "'estimated', true))::text, in_flight=false WHERE run_id=%s AND in_flight",
                (INTERRUPTED, run_id),
            )
            sql, params = self._calls(run_id)
            rows = await (await conn.execute(sql.encode(), params)).fetchall()
        return [self._entry(row) for row in rows]

    async def renew(self, lease_s: float) -> set[str]:
        sent = time.monotonic()
        sql, params = self._renewal(lease_s)
        rows = await self._query(f"{sql} RETURNING id", params)
        owned = {row["id"] for row in rows}
        self._leases.renewed(owned, sent, lease_s)
        return owned

    async def claim(
        self, lease_s: float, *, limit: int | None = None, run_id: str | None = None
    ) -> list[Claim]:
        params = {
            "me": self.instance,
            "lease_s": lease_s,
            "limit": limit,
            "run_id": run_id,
            "expired": self._contact.may_claim_expired(lease_s),
        }
        sent = time.monotonic()
        rows = await self._query(CLAIM, params)
        self._leases.taken([row["id"] for row in rows], sent, lease_s)
        rows.sort(key=lambda row: row["created_at"])
        return [Claim(self._record(row), row["resumes"], row["cancel_requested"]) for row in rows]

    async def request_cancel(self, run_id: str) -> bool:
        rows = await self._query(
            f"UPDATE runs SET cancel_requested=true WHERE id=%s AND status IN {UNFINISHED} RETURNING id",
            (run_id,),
        )
        return bool(rows)

    async def cancel_requested(self) -> set[str]:
        rows = await self._query(
            f"SELECT id FROM runs WHERE owner=%s AND status IN {UNFINISHED} AND cancel_requested",
            (self.instance,),
        )
        return {row["id"] for row in rows}

    # Reads ----------------------------------------------------------------------------------

    async def usage(self, key_hash: str | None, since: str, until: str) -> list[UsageDay]:
        rows = await self._query(USAGE, (key_hash, since, until))
        return [UsageDay(r["day"], r["runs"], int(r["tokens"]), r["cost"]) for r in rows]

    async def close(self, timeout_s: float = 5.0) -> None:
        await self._writes.close(timeout_s)
        await self._pool.close()
