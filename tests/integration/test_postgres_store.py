"""The Postgres store on the machine's Postgres: the schema from an empty database and from the
previous version, migrated once when stores open together, claims that never hand one run to
two replicas, and a pool that lends no connection the server closed."""

import asyncio
import select

import psycopg
from psycopg.rows import dict_row

from api.storage.postgres import PostgresRunStore
from api.storage.postgres_pool import connection_pool, has_news
from api.storage.postgres_schema import STEPS, migrate


async def _open(database: str) -> tuple[PostgresRunStore, list[int]]:
    store = PostgresRunStore(database, pool_size=4)
    return store, await store.open()


def test_an_empty_database_gets_every_step(database: str) -> None:
    async def check() -> None:
        store, applied = await _open(database)
        try:
            assert applied == list(range(1, len(STEPS) + 1))
            await store.create("run_a", "Q?", {"question": "Q?"}, lease_s=10)
            assert (await store.get("run_a")) is not None
        finally:
            await store.close()
        again, applied = await _open(database)
        await again.close()
        assert applied == [], "nothing to do the second time"

    asyncio.run(check())


def test_the_previous_version_upgrades_in_place(database: str) -> None:
    async def check() -> None:
        async with await psycopg.AsyncConnection.connect(
            database, autocommit=True, row_factory=dict_row
        ) as conn:
            assert await migrate(conn, "earlier", steps=STEPS[:-1]) == list(range(1, len(STEPS)))
            await conn.execute(
                "INSERT INTO runs (id, status, question, request, created_at, updated_at) "
                "VALUES ('run_old', 'completed', 'Old?', '{\"question\": \"Old?\"}', now(), now())"
            )
        store, applied = await _open(database)
        try:
            assert applied == [len(STEPS)]
            old = await store.get("run_old")
            assert old is not None and old.question == "Old?" and old.status == "completed"
            assert await store.request_cancel("run_old") is False, "the new column, on an old row"
        finally:
            await store.close()

    asyncio.run(check())


def test_stores_opening_together_migrate_once_and_claim_apart(database: str) -> None:
    async def check() -> None:
        opened = await asyncio.gather(*(_open(database) for _ in range(3)))
        stores = [store for store, _ in opened]
        try:
            assert sorted(len(applied) for _, applied in opened) == [0, 0, len(STEPS)]
            for i in range(12):
                await stores[0].create(f"run_{i:02}", "Q?", {"question": "Q?"}, lease_s=10, owned=False)
            assert await stores[1].queued() == 12
            claims = await asyncio.gather(*(store.claim(10, limit=5) for store in stores))
            taken = [c.run.id for claimed in claims for c in claimed]
            assert sorted(taken) == [f"run_{i:02}" for i in range(12)], "each run claimed once"
            assert all(c.resumes == 0 for claimed in claims for c in claimed), "a queued run is no crash"
        finally:
            for store in stores:
                await store.close()

    asyncio.run(check())


def test_the_pool_lends_no_connection_the_server_closed_and_asks_nothing_of_a_quiet_one(
    database: str,
) -> None:
    async def check() -> None:
        pool = connection_pool(database, 1)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                first, fd = conn.info.backend_pid, conn.fileno()
                assert not has_news(fd), "an idle connection has nothing to read"
            async with await psycopg.AsyncConnection.connect(database, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            closed = select.poll()
            closed.register(fd, select.POLLIN)
            assert closed.poll(5000), "the server closes its end"
            async with pool.connection() as conn:
                assert conn.info.backend_pid != first, "the closed one was checked and replaced"
                assert (await (await conn.execute("SELECT 1 AS one")).fetchone()) == {"one": 1}
        finally:
            await pool.close()

    asyncio.run(check())
