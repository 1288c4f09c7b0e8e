"""Runs outlive the process that ran them; runs it left unfinished are marked interrupted."""

import asyncio
from pathlib import Path

import httpx

from api.settings import Settings
from api.sqlite_store import SQLiteRunStore
from api.store import REPLAY_PAGE, Event
from graph.events import (
    ANSWER_DELTA,
    RUN_CANCELLED,
    RUN_STARTED,
    AnswerDelta,
    RunEnded,
    RunSettings,
    RunStarted,
)
from graph.result import assemble
from tests.conftest import Service, stub_backend
from tests.sse import frames
from tests.stub_backend import StubBackend


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
    empty = assemble(
        run_id="run_long",
        question="Q?",
        state=None,
        calls=[],
        question_tokens=0,
        question_exact=False,
        total_ms=0.0,
        error=None,
        status="cancelled",
    )
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
