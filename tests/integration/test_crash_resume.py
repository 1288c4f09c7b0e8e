"""Runs survive the death of their process: ``kill -9`` mid-run, then a restart (or a second
process on the same DATA_DIR) resumes the run from where it stopped. Finished workers are not
called again, the usage covers every attempt, the event log is one gap-free stream with
``run.resumed`` at the seam, and SQLite's integrity check passes after every crash."""

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stub_backend import StubBackend
from tests.support.runs import BODY, calls_for, cut_tokens, follow, interrupted, until, workers_received
from tests.support.served import Served, integrity
from tests.support.sse import Frame, frames


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def stored_as(http: httpx.Client, run_id: str, status: str, timeout_s: float, what: str) -> Any:
    """The run's view, once its status is ``status``."""
    return until(
        lambda: (v := http.get(f"/v1/runs/{run_id}").json())["status"] == status and v, timeout_s, what
    )


def span_ms(calls: list[dict[str, Any]]) -> float:
    """From the first call's start to the last call's end."""
    start = min(datetime.fromisoformat(c["started_at"]) for c in calls)
    end = max(datetime.fromisoformat(c["finished_at"]) for c in calls)
    return (end - start).total_seconds() * 1000


def start_and_crash(stub: StubBackend, served: Served) -> tuple[str, list[Frame]]:
    """Start a run, follow it until its plan is complete and 2 of its 4 workers have answered
    while the stub holds the other 2, then ``kill -9`` the process. Returns the run id and the
    events seen. (Workers start while the plan streams: without the plan's end, the planner's
    call could be the one cut short.)"""
    seen: list[Frame] = []
    with httpx.Client(base_url=served.url, timeout=30) as http:
        run_id = http.post("/v1/runs", json=BODY).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for frame in frames(response):
                if frame.comment:
                    continue
                seen.append(frame)
                names = [f.event for f in seen]
                if names.count("task.completed") == 2 and "plan" in names:
                    break
    until(lambda: len(workers_received(stub)) == 4, 10, "all four workers to be called")
    served.kill()
    return run_id, seen


def test_a_run_killed_mid_way_resumes_after_a_restart(four_parts: StubBackend, data_dir: Path) -> None:
    stub = four_parts
    run_id, before = start_and_crash(stub, Served(stub, data_dir))
    assert integrity(data_dir) == "ok"
    stub.options.slow = {}
    restarted = Served(stub, data_dir)
    try:
        after = list(follow(restarted.url, run_id, before[-1].id))
        with httpx.Client(base_url=restarted.url) as http:
            view = http.get(f"/v1/runs/{run_id}").json()
    finally:
        restarted.kill()
    assert integrity(data_dir) == "ok"

    ids = [f.id for f in before] + [f.id for f in after]
    assert ids == list(range(1, len(ids) + 1)), "one gap-free stream across the restart"
    seam = [i for i, f in enumerate(after) if f.event == "run.resumed"]
    assert len(seam) == 1, "one seam"
    resumed = after[seam[0]]
    assert resumed.data["after"] == resumed.id - 1
    assert after[-1].event == "run.completed"
    assert view["status"] == "completed"

    assert (calls_for(stub, "Part 1"), calls_for(stub, "Part 2")) == (1, 1), "finished workers: once"
    assert (calls_for(stub, "Part 3"), calls_for(stub, "Part 4")) == (1, 1), "the held ones: answered once"
    assert len(stub.calls_of("planner")) == 1
    result = view["result"]
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    cut = interrupted(result)
    assert result["usage"]["total_tokens"] == billed + cut_tokens(result), "every call, counted once"
    assert sorted(c["task_id"] for c in cut) == ["t3", "t4"]
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] == 0 and c["estimated"] for c in cut)
    assert result["usage"]["estimated"] is True
    completed = [f.data["task_id"] for f in before + after if f.event == "task.completed"]
    assert sorted(completed) == ["t1", "t2", "t3", "t4"], "events before the seam are not repeated"

    timings = result["timings"]
    assert timings["total_ms"] >= span_ms(result["calls"]), "the time suspended is in the total"
    assert timings["resumes"] == 1
    assert 0 < timings["active_ms"] <= timings["total_ms"]


def test_a_survivor_on_the_same_data_dir_takes_over(four_parts: StubBackend, data_dir: Path) -> None:
    """A rolling deploy: the process that runs the run dies, another one stays up; no restart."""
    stub = four_parts
    lease_s = 2
    survivor = Served(stub, data_dir, lease_s=lease_s)
    try:
        run_id, before = start_and_crash(stub, Served(stub, data_dir, lease_s=lease_s))
        stub.options.slow = {}
        with httpx.Client(base_url=survivor.url, timeout=30) as http:
            view = stored_as(http, run_id, "completed", lease_s + 10, "the survivor to finish the run")
        after = list(follow(survivor.url, run_id, before[-1].id))
    finally:
        survivor.kill()
    assert integrity(data_dir) == "ok"
    assert [f.event for f in after].count("run.resumed") == 1
    assert after[-1].event == "run.completed"
    assert (calls_for(stub, "Part 1"), calls_for(stub, "Part 2")) == (1, 1)
    assert view["result"]["usage"]["total_tokens"] == sum(
        c.prompt_tokens + c.completion_tokens for c in stub.calls
    ) + cut_tokens(view["result"])


def test_a_run_that_keeps_killing_its_process_fails(four_parts: StubBackend, data_dir: Path) -> None:
    """Each life of the run ends with ``kill -9`` once its workers are out; after MAX_RESUMES
    (2) resumes the next process stores it failed instead of running it again."""
    stub = four_parts
    stub.options.slow = {"Part": 120.0}
    first = Served(stub, data_dir)
    with httpx.Client(base_url=first.url) as http:
        run_id = http.post("/v1/runs", json=BODY).json()["run_id"]
    until(lambda: len(workers_received(stub)) == 4, 10, "life 1's workers")
    first.kill()
    assert integrity(data_dir) == "ok"
    for life in (2, 3):
        served = Served(stub, data_dir)
        until(lambda n=4 * life: len(workers_received(stub)) == n, 10, f"life {life}'s workers")
        served.kill()
        assert integrity(data_dir) == "ok"
    last = Served(stub, data_dir)
    try:
        with httpx.Client(base_url=last.url) as http:
            view = stored_as(http, run_id, "failed", 10, "the run to be failed")
            events = [f.event for f in follow(last.url, run_id, 0)]
    finally:
        last.kill()
    assert view["result"]["error"]["kind"] == "crash_loop"
    assert "MAX_RESUMES=2" in view["result"]["error"]["message"]
    assert events.count("run.resumed") == 2
    assert view["result"]["timings"]["resumes"] == 2
    assert events[-1] == "run.failed"
    assert len(workers_received(stub)) == 4 * 3, "the failed run was not run a fourth time"


def test_with_resume_off_a_killed_run_is_interrupted(four_parts: StubBackend, data_dir: Path) -> None:
    stub = four_parts
    run_id, _ = start_and_crash(stub, Served(stub, data_dir))
    received = len(stub.received)
    restarted = Served(stub, data_dir, resume_runs="false")
    try:
        with httpx.Client(base_url=restarted.url) as http:
            view = stored_as(http, run_id, "interrupted", 10, "the run to be stored interrupted")
    finally:
        restarted.kill()
    assert len(stub.received) == received, "nothing was called again"
    rows = view["result"]["calls"]
    assert sorted(r["task_id"] for r in rows if r["error"] == "interrupted") == ["t3", "t4"]
    assert view["result"]["usage"]["total_tokens"] == sum(
        c.prompt_tokens + c.completion_tokens for c in stub.calls
    ) + cut_tokens(view["result"])
    assert integrity(data_dir) == "ok"


def test_a_process_frozen_past_its_lease_lets_the_run_go(four_parts: StubBackend, data_dir: Path) -> None:
    """SIGSTOP holds a process past its lease (its lock stays held: only the lease can expire);
    another process takes the run over and finishes it; the thawed process stops its copy (its
    lease's local deadline has passed, or its renewal finds the run taken), and nothing it
    writes reaches the run's log or ledger."""
    stub = four_parts
    lease_s = 2
    frozen = Served(stub, data_dir, lease_s=lease_s)
    survivor = Served(stub, data_dir, lease_s=lease_s)
    try:
        with httpx.Client(base_url=frozen.url, timeout=30) as http:
            run_id = http.post("/v1/runs", json=BODY).json()["run_id"]
            with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
                # Stored once the calls they tell of are journaled (the planner's, the first two
                # workers'): the survivor need not make those calls again.
                seen: list[str | None] = []
                for frame in frames(response):
                    seen.append(frame.event)
                    if "plan" in seen and seen.count("task.completed") == 2:
                        break
        until(lambda: len(workers_received(stub)) == 4, 10, "all four workers to be called")
        frozen.process.send_signal(signal.SIGSTOP)
        stub.options.slow = {}
        with httpx.Client(base_url=survivor.url, timeout=30) as http:
            view = stored_as(http, run_id, "completed", lease_s + 10, "the survivor to finish the run")
        frozen.process.send_signal(signal.SIGCONT)
        until(lambda: "stopping it here" in frozen.log.read_text(), 10, "the thawed one to let go")
        events = list(follow(survivor.url, run_id, 0))
        with httpx.Client(base_url=survivor.url) as http:
            after = http.get(f"/v1/runs/{run_id}").json()
    finally:
        frozen.kill()
        survivor.kill()
    # The view may come from the survivor's memory before its final commit: updated_at may move.
    same = {key: value for key, value in after.items() if key != "updated_at"}
    assert same == {key: value for key, value in view.items() if key != "updated_at"}, (
        "the thawed process changed nothing"
    )
    assert [f.id for f in events] == list(range(1, len(events) + 1))
    assert [f.event for f in events].count("run.completed") == 1
    assert events[-1].event == "run.completed"
    assert view["result"]["usage"]["total_tokens"] == sum(
        c.prompt_tokens + c.completion_tokens for c in stub.calls
    ) + cut_tokens(view["result"])
    assert integrity(data_dir) == "ok"
