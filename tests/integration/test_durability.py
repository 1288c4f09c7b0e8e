"""Runs outlive the process that ran them: finished ones are kept (without their checkpoints),
unfinished ones are resumed (or interrupted, with RESUME_RUNS=false), old ones go with
RETENTION_DAYS, and a database of the previous version is upgraded in place."""

import asyncio
import sqlite3
from pathlib import Path

import httpx

from api.settings import Settings
from api.storage.interface import REPLAY_PAGE, Event
from api.storage.sqlite import SQLiteRunStore
from api.storage.sqlite_schema import MIGRATIONS
from graph.events import (
    ANSWER_DELTA,
    RUN_CANCELLED,
    RUN_STARTED,
    AnswerDelta,
    RunEnded,
    RunSettings,
    RunStarted,
)
from tests.conftest import Service, empty_result, stub_backend
from tests.stub_backend import StubBackend
from tests.support.sse import frames


def test_a_finished_run_survives_a_restart(stub: StubBackend, settings: Settings) -> None:
    with Service(settings, stub_backend(stub)) as first, httpx.Client(base_url=first.url) as http:
        result = http.post("/v1/reason", json={"question": "Q?"}).json()
        with http.stream("GET", f"/v1/runs/{result['run_id']}/events") as response:
            before = [(f.id, f.event, f.data) for f in frames(response) if not f.comment]
    with Service(settings, stub_backend(stub)) as second, httpx.Client(base_url=second.url) as http:
        view = http.get(f"/v1/runs/{result['run_id']}").json()
        with http.stream("GET", f"/v1/runs/{result['run_id']}/events") as response:
            after = [(f.id, f.event, f.data) for f in frames(response) if not f.comment]
        listed = http.get("/v1/runs").json()["data"]
    assert view["status"] == "completed"
    assert view["result"] == result
    assert after == before
    assert [r["run_id"] for r in listed] == [result["run_id"]]


async def orphan(path: Path) -> None:
    """A run that a process stored as running and never finished."""
    store = SQLiteRunStore(path)
    await store.open()
    await store.create("run_orphan", "Q?", {"question": "Q?"}, lease_s=60)
    store.set_status("run_orphan", "running")
    settings = RunSettings(max_subtasks=1, max_revisions=0, max_output_tokens=16)
    started = RunStarted(run_id="run_orphan", question="Q?", reasoning_effort=None, settings=settings)
    store.append(Event(1, "run_orphan", RUN_STARTED, started))
    await store.close()


def test_runs_left_in_flight_are_resumed(stub: StubBackend, settings: Settings) -> None:
    asyncio.run(orphan(Path(settings.data_dir) / "reasoner.db"))
    with Service(settings, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        with http.stream("GET", "/v1/runs/run_orphan/events") as response:
            got = [(f.id, f.event) for f in frames(response) if not f.comment]
        assert http.get("/v1/runs/run_orphan").json()["status"] == "completed"
    assert got[:3] == [(1, "run.started"), (2, "run.resumed"), (3, "stage")]
    assert got[-1][1] == "run.completed"
    assert [i for i, _ in got] == list(range(1, len(got) + 1)), "one gap-free log across the seam"


def test_with_resume_off_runs_left_in_flight_are_interrupted(stub: StubBackend, settings: Settings) -> None:
    asyncio.run(orphan(Path(settings.data_dir) / "reasoner.db"))
    off = settings.model_copy(update={"resume_runs": False})
    with Service(off, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        assert http.get("/v1/runs/run_orphan").json()["status"] == "interrupted"
        with http.stream("GET", "/v1/runs/run_orphan/events") as response:
            names = [f.event for f in frames(response) if not f.comment]
    assert names == ["run.started", "run.interrupted"]
    assert not stub.calls, "nothing was run again"


def test_idle_streams_get_a_heartbeat(stub: StubBackend, settings: Settings) -> None:
    stub.options.latency_s = 0.6
    fast = settings.model_copy(update={"sse_heartbeat_s": 0.2})
    body = {"question": "Q?", "max_revisions": 0}
    with (
        Service(fast, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=30) as http,
        http.stream("POST", "/v1/reason", json=body, headers={"Accept": "text/event-stream"}) as response,
    ):
        got = list(frames(response))
    assert any(f.comment for f in got)
    assert got[-1].event == "run.completed"


async def long_run(path: Path, deltas: int) -> None:
    """A finished run with a long event log, as a process left it."""
    store = SQLiteRunStore(path)
    await store.open()
    await store.create("run_long", "Q?", {"question": "Q?"}, lease_s=60)
    for i in range(1, deltas + 1):
        store.append(Event(i, "run_long", ANSWER_DELTA, AnswerDelta(text=f"{i} ")))
    empty = empty_result("run_long")
    ended = RunEnded(run_id="run_long", result=empty, error=None)
    await store.finish("run_long", "cancelled", empty, Event(deltas + 1, "run_long", RUN_CANCELLED, ended))
    await store.close()


def test_a_long_log_is_replayed_whole_in_pages(stub: StubBackend, settings: Settings) -> None:
    n = 2 * REPLAY_PAGE + 17
    asyncio.run(long_run(Path(settings.data_dir) / "reasoner.db", n))
    with Service(settings, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        with http.stream("GET", "/v1/runs/run_long/events") as response:
            ids = [f.id for f in frames(response) if not f.comment]
        with http.stream(
            "GET", "/v1/runs/run_long/events", headers={"Last-Event-ID": str(REPLAY_PAGE)}
        ) as response:
            rest = [f.id for f in frames(response) if not f.comment]
    assert ids == list(range(1, n + 2))
    assert rest == list(range(REPLAY_PAGE + 1, n + 2))


def test_a_finished_run_keeps_its_result_and_events_not_its_checkpoints(
    stub: StubBackend, settings: Settings
) -> None:
    with Service(settings, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        result = http.post("/v1/reason", json={"question": "Q?"}).json()
        with http.stream("GET", f"/v1/runs/{result['run_id']}/events") as response:
            events = [f for f in frames(response) if not f.comment]
    db = sqlite3.connect(Path(settings.data_dir) / "reasoner.db")
    try:
        checkpoints = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        writes = db.execute("SELECT COUNT(*) FROM writes").fetchone()[0]
        calls = db.execute("SELECT COUNT(*), COUNT(output) FROM calls").fetchone()
    finally:
        db.close()
    assert (checkpoints, writes) == (0, 0), "checkpoints are for resuming; the run has ended"
    assert calls == (len(result["calls"]), 0), "the ledger stays, the call outputs kept to resume go"
    assert events[-1].event == "run.completed"


async def aged(path: Path) -> None:
    """Three runs: finished long ago, finished now, and unfinished long ago."""
    store = SQLiteRunStore(path)
    await store.open()
    for run_id in ("run_old", "run_new", "run_open"):
        await store.create(run_id, "Q?", {"question": "Q?"}, lease_s=60)
        store.append(Event(1, run_id, RUN_STARTED, started(run_id)))
    for run_id in ("run_old", "run_new"):
        empty = empty_result(run_id)
        ended = RunEnded(run_id=run_id, result=empty, error=None)
        await store.finish(run_id, "cancelled", empty, Event(2, run_id, RUN_CANCELLED, ended))
    await store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET updated_at='2020-01-01T00:00:00+00:00' WHERE id IN ('run_old', 'run_open')")
    db.commit()
    db.close()


def started(run_id: str) -> RunStarted:
    settings = RunSettings(max_subtasks=1, max_revisions=0, max_output_tokens=16)
    return RunStarted(run_id=run_id, question="Q?", reasoning_effort=None, settings=settings)


def test_retention_deletes_old_finished_runs_only(tmp_path: Path) -> None:
    path = tmp_path / "reasoner.db"
    asyncio.run(aged(path))

    async def prune() -> tuple[int, list[str], int]:
        store = SQLiteRunStore(path)
        await store.open()
        try:
            deleted = await store.delete_before("2025-01-01T00:00:00+00:00")
            left = [r.id for r in await store.recent(10)]
            events = len(await store.events("run_old"))
        finally:
            await store.close()
        return deleted, left, events

    deleted, left, events = asyncio.run(prune())
    assert deleted == 1
    assert sorted(left) == ["run_new", "run_open"], "recent and unfinished runs stay"
    assert events == 0, "the deleted run's events went with it"


V0_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, status TEXT NOT NULL, question TEXT NOT NULL,
    request TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, result TEXT, owner TEXT);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
INSERT INTO runs VALUES ('run_before', 'completed', 'Q?', '{"question":"Q?"}',
    '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', NULL, 'host:123');
INSERT INTO events VALUES ('run_before', 1, 'run.started', '{}');
"""


def test_a_database_of_the_previous_version_is_upgraded_in_place(
    stub: StubBackend, settings: Settings
) -> None:
    path = Path(settings.data_dir) / "reasoner.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    db.close()
    with Service(settings, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        old = http.get("/v1/runs/run_before").json()
        new = http.post("/v1/reason", json={"question": "Q?"}).json()
    assert old["status"] == "completed"
    assert new["status"] == "completed"
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
