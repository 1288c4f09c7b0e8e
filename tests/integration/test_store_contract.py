"""The run store's contract, on SQLite and on Postgres alike: what one process stores, reads,
leases, releases, claims, finishes and deletes, through ``RunStore`` only."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import api.storage.leases
from api.storage.interface import Event, IdempotencyKey, IdempotencyKeyReused, RunStore, Spend
from api.storage.postgres import PostgresRunStore
from api.storage.sqlite import SQLiteRunStore
from graph.events import ANSWER_DELTA, RUN_COMPLETED, AnswerDelta, RunEnded
from graph.journal import IN_FLIGHT, INTERRUPTED
from graph.ledger import CallRecord
from tests.conftest import empty_result

LEASE_S = 60


def call(error: str | None) -> CallRecord:
    return CallRecord(
        node="worker",
        task_id="t1",
        attempt=1,
        retry=0,
        model="stub-worker",
        prompt_tokens=10,
        completion_tokens=5,
        estimated=False,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        latency_ms=1000.0,
        error=error,
    )


def delta(run_id: str, seq: int) -> Event:
    return Event(seq, run_id, ANSWER_DELTA, AnswerDelta(text=f"part {seq}"))


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make() -> SQLiteRunStore | PostgresRunStore:
        if request.param == "sqlite":
            return SQLiteRunStore(tmp_path / "reasoner.db")
        return PostgresRunStore(request.getfixturevalue("database"), pool_size=2)

    return make


async def runs_of_one_process(store: RunStore) -> None:
    await store.create("run_a", "A?", {"question": "A?"}, lease_s=LEASE_S)
    await store.create("run_b", "B?", {"question": "B?"}, lease_s=LEASE_S, owned=False)
    await store.create("run_c", "C?", {"question": "C?"}, lease_s=LEASE_S, key_hash="k")
    for seq in (1, 2, 3):
        store.append(delta("run_a", seq))
    store.set_status("run_a", "running")
    store.record_call("run_a", 1, call(IN_FLIGHT), "streamed so far")
    store.record_call("run_a", 2, call(None), "the answer")
    assert await store.flush(5)

    run_a = await store.get("run_a")
    assert run_a is not None and run_a.status == "running" and run_a.question == "A?"
    assert run_a.request == {"question": "A?"} and run_a.result is None
    assert datetime.fromisoformat(run_a.created_at).tzinfo is not None
    assert await store.get("run_z") is None
    assert [e.id for e in await store.events("run_a")] == [1, 2, 3]
    assert await store.events("run_a", after=1, limit=1) == [delta("run_a", 2)]
    assert (await store.last_event_id("run_a"), await store.last_event_id("run_b")) == (3, 0)
    assert await store.queued() == 2

    interrupted, finished = await store.calls("run_a")
    assert (interrupted.seq, interrupted.row["error"], interrupted.row["estimated"]) == (1, INTERRUPTED, True)
    assert (finished.seq, finished.row, finished.output) == (2, call(None), "the answer")

    assert await store.renew(LEASE_S) == {"run_a", "run_c"}
    await store.release(["run_c"])
    assert await store.flush(5)
    assert await store.renew(LEASE_S) == {"run_a"}, "a released run is no longer this process's"

    oldest = await store.claim(LEASE_S, limit=1)
    assert [(c.run.id, c.resumes) for c in oldest] == [("run_b", 0)], "oldest first; no crash"
    named = await store.claim(LEASE_S, run_id="run_c")
    assert [(c.run.id, c.run.key_hash, c.resumes) for c in named] == [("run_c", "k", 0)]
    assert await store.claim(LEASE_S) == [], "nothing is left to claim"
    assert await store.renew(LEASE_S) == {"run_a", "run_b", "run_c"}

    result = empty_result("run_a")
    ended = Event(4, "run_a", RUN_COMPLETED, RunEnded(run_id="run_a", result=result, error=None))
    await store.finish("run_a", "completed", result, ended)
    run_a = await store.get("run_a")
    assert run_a is not None and run_a.status == "completed" and run_a.result == result
    assert (await store.events("run_a"))[-1] == ended
    assert [entry.output for entry in await store.calls("run_a")] == [None, None], "outputs go"
    assert await store.renew(LEASE_S) == {"run_b", "run_c"}

    assert [r.id for r in await store.recent(10)] == ["run_c", "run_b", "run_a"]
    assert [r.id for r in await store.recent(10, "run_c")] == ["run_b", "run_a"]
    assert [r.id for r in await store.recent(1, "run_c")] == ["run_b"]
    assert [r.id for r in await store.recent(10, key_hash="k")] == ["run_c"]
    today = datetime.now(UTC).date().isoformat()
    [day] = await store.usage(None, today, today)
    assert (day.day, day.runs, day.total_tokens, day.cost_usd) == (today, 2, 0, 0.0)
    assert await store.usage("k", "2020-01-01", "2020-01-02") == []

    assert await store.delete_before("2000-01-01T00:00:00+00:00") == 0
    assert await store.delete_before("2999-01-01T00:00:00+00:00") == 1, "only the finished run"
    assert await store.get("run_a") is None
    assert (await store.events("run_a"), await store.calls("run_a")) == ([], [])
    assert {r.id for r in await store.recent(10)} == {"run_b", "run_c"}


def test_the_runs_of_one_process(open_store: Any) -> None:
    async def scenario() -> None:
        store = open_store()
        await store.open()
        try:
            await runs_of_one_process(store)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_run_taken_over_takes_no_more_writes_from_its_first_owner(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.storage.leases, "RECONNECT_S", 0.0)  # a store just opened may claim at once

    async def scenario() -> None:
        first, second = open_store(), open_store()
        await first.open()
        await second.open()
        try:
            await first.create("run_a", "A?", {"question": "A?"}, lease_s=0)
            first.append(delta("run_a", 1))
            assert await first.flush(5)
            await asyncio.sleep(0.01)
            claimed = await second.claim(0)
            assert [(c.run.id, c.resumes) for c in claimed] == [("run_a", 1)], "a lapsed lease is a crash"
            first.append(delta("run_a", 2))
            first.set_status("run_a", "failed")
            first.record_call("run_a", 1, call(None), "late")
            assert await first.flush(5)
            second.append(delta("run_a", 2))
            second.set_status("run_a", "running")
            assert await second.flush(5)
            run_a = await second.get("run_a")
            assert run_a is not None and run_a.status == "running"
            assert [e.data for e in await second.events("run_a")] == [{"text": "part 1"}, {"text": "part 2"}]
            assert await second.calls("run_a") == []
            assert await first.renew(LEASE_S) == set()
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_an_idempotency_key_names_one_run_and_a_grant_sees_the_keys_spend(open_store: Any) -> None:
    async def scenario() -> None:
        store = open_store()
        await store.open()
        spent: list[Spend] = []

        def grant(spend: Spend) -> dict[str, Any]:
            spent.append(spend)
            return {"question": "Q?", "token_budget": 100}

        try:
            key = IdempotencyKey("scope", "fingerprint")
            made = await store.create(
                "run_a", "Q?", {"question": "Q?"}, lease_s=LEASE_S, key_hash="k", grant=grant, idempotency=key
            )
            again = await store.create(
                "run_b", "Q?", {"question": "Q?"}, lease_s=LEASE_S, key_hash="k", grant=grant, idempotency=key
            )
            assert again == made and made.request == {"question": "Q?", "token_budget": 100}
            assert await store.get("run_b") is None
            with pytest.raises(IdempotencyKeyReused):
                await store.create(
                    "run_c",
                    "Q?",
                    {"question": "Q?"},
                    lease_s=LEASE_S,
                    idempotency=IdempotencyKey("scope", "other"),
                )
            await store.create("run_d", "Q?", {"question": "Q?"}, lease_s=LEASE_S, key_hash="k", grant=grant)
            first, second = spent
            assert (first.requests, first.tokens, first.cost_usd) == (0, 0, 0.0)
            assert (second.requests, second.tokens, second.cost_usd) == (1, 100, 0.0)
            assert 0 < second.window_frees_in_s <= 60 and 0 < second.day_ends_in_s <= 86400
        finally:
            await store.close()

    asyncio.run(scenario())
