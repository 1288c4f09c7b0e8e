"""SIGTERM: not ready, no new runs, in-flight runs finish within the grace period or are left to
resume in the next process (stored as interrupted with RESUME_RUNS=false), streams end, and the
store stays whole. Also: dropped streams leave nothing behind."""

import json
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service
from tests.stub_backend import StubBackend
from tests.support.served import Served, integrity
from tests.support.sse import frames


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run_until_sigterm(served: Served) -> tuple[str, list[str], int, int]:
    """Start a run, SIGTERM once its plan is out; return its id, its stream's events, and what
    /readyz and a new run got during the drain."""
    with httpx.Client(base_url=served.url, timeout=60) as http:
        run_id = http.post("/v1/runs", json={"question": "Q?", "max_revisions": 0}).json()["run_id"]
        names: list[str] = []
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            stream = frames(response)
            for frame in stream:
                names.append(str(frame.event))
                if frame.event == "plan":
                    break
            served.process.send_signal(signal.SIGTERM)
            with httpx.Client(base_url=served.url, timeout=10) as other:
                ready = other.get("/readyz").status_code
                refused = other.post("/v1/runs", json={"question": "Q?"})
            names += [str(f.event) for f in stream if not f.comment]
    assert refused.json()["error"]["code"] == "shutting_down"
    return run_id, names, ready, refused.status_code


def stored_status(data_dir: Path, run_id: str) -> str:
    db = sqlite3.connect(data_dir / "reasoner.db")
    try:
        return str(db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize(
    ("latency_s", "grace_s", "resume", "last_event", "stored"),
    [
        (0.4, 20, True, "run.completed", "completed"),
        (1.5, 0.5, True, None, "running"),
        (1.5, 0.5, False, "run.interrupted", "interrupted"),
    ],
    ids=["finishes-within-grace", "left-to-resume-past-grace", "interrupted-past-grace-without-resume"],
)
def test_sigterm_drains_in_flight_runs(
    stub: StubBackend,
    data_dir: Path,
    latency_s: float,
    grace_s: float,
    resume: bool,
    last_event: str | None,
    stored: str,
) -> None:
    stub.options.latency_s = latency_s
    served = Served(stub, data_dir, grace_s=grace_s, resume_runs=resume)
    try:
        run_id, names, ready, refused = run_until_sigterm(served)
        served.process.wait(timeout=30)  # the server exits by itself once drained
    finally:
        served.stop()
    assert (ready, refused) == (503, 503)
    if last_event is None:
        assert not names[-1].startswith("run."), f"no terminal event: {names}"
    else:
        assert names[-1] == last_event, names
    assert stored_status(data_dir, run_id) == stored
    assert integrity(data_dir) == "ok"
    if stored != "running":
        return
    stub.options.latency_s = 0.0
    restarted = Served(stub, data_dir)
    try:
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
                after = [(f.id, f.event) for f in frames(response) if not f.comment]
            view = http.get(f"/v1/runs/{run_id}").json()
    finally:
        restarted.stop()
    assert view["status"] == "completed", "resumed after the restart, not interrupted"
    assert [i for i, _ in after] == list(range(1, len(after) + 1)), "one gap-free log"
    assert [name for _, name in after].count("run.resumed") == 1


def test_a_dropped_stream_leaves_no_follower_behind(service: Service, stub: StubBackend) -> None:
    stub.options.latency_s = 0.3
    lookup = service.server.config.app.state.service.lookup  # type: ignore[attr-defined]
    with httpx.Client(base_url=service.url, timeout=30) as http:
        run_id = http.post("/v1/runs", json={"question": "Q?", "max_revisions": 0}).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for frame in frames(response):
                if frame.event == "plan":
                    break
        assert http.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            names = [f.event for f in frames(response) if not f.comment]
    assert names[-1] == "run.completed"
    assert lookup.followers == 0
    assert service.server.config.app.state.service.registry.active == 0  # type: ignore[attr-defined]


def test_clients_waiting_on_a_run_left_to_resume_are_told_where_it_went(
    stub: StubBackend, data_dir: Path
) -> None:
    """A waiting POST /v1/reason gets 503 run_suspended; a streamed chat completion gets an
    error chunk with that code before [DONE]. Both can find the run by its id afterwards."""
    stub.options.latency_s = 1.5
    served = Served(stub, data_dir, grace_s=0.3)
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "Q?"}], "stream": True}
    try:
        with (
            ThreadPoolExecutor(1) as pool,
            httpx.Client(base_url=served.url, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as streamed,
        ):
            waiting = pool.submit(httpx.post, f"{served.url}/v1/reason", json={"question": "Q?"}, timeout=30)
            lines = streamed.iter_lines()
            data = [next(line for line in lines if "reasoning_content" in line)]
            served.process.send_signal(signal.SIGTERM)
            data += [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
            answered = waiting.result()
            run_id = streamed.headers["X-Run-Id"]
        served.process.wait(timeout=30)
    finally:
        served.stop()
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["code"] == "run_suspended"
    assert answered.status_code == 503
    assert answered.json()["error"]["code"] == "run_suspended"
    assert stored_status(data_dir, run_id) == "running", "left to resume"
