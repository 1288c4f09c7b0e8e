"""Where runs wait when there are replicas: a replica with no free slot leaves a run queued in
the database, another replica runs it, and the callers that wait for an answer (``POST
/v1/reason``, the OpenAI route, streamed or not) wait on it there; ``MAX_QUEUED_RUNS`` counts the
runs queued in the database, whichever replica admitted them."""

from pathlib import Path

import httpx

from tests.stub_backend import StubBackend
from tests.support.cluster import start, submit
from tests.support.runs import until

HELD = {"question": "Held?", "max_subtasks": 4, "max_revisions": 0}
"""A run whose fourth worker the stub holds: it keeps its replica's only slot."""


def planned_by(stub: StubBackend, question: str) -> list[str]:
    """The replicas (API keys) whose planner calls carried ``question``."""
    keys = [key for key, role in stub.callers if role == "planner"]
    planners = [last for role, last in stub.received if role == "planner"]
    return [key for key, last in zip(keys, planners, strict=True) if question in last]


def test_a_full_replica_hands_runs_on_and_its_callers_wait_for_them(
    stub: StubBackend, tmp_path: Path, database: str, prefix: str
) -> None:
    stub.options.subtasks = 4
    stub.options.slow = {"Part 4": 120.0}
    cluster = start(stub, tmp_path, database, prefix, 2, max_active_runs=1, max_queued_runs=1, max_subtasks=2)
    try:
        a, b = cluster.replicas
        submit(a.url, HELD)
        until(lambda: any("Part 4" in last for role, last in stub.received if role == "worker"), 10, "A busy")

        with httpx.Client(base_url=a.url, timeout=60) as http:
            reason = http.post("/v1/reason", json={"question": "Asked on A?", "max_revisions": 0})
            assert reason.status_code == 200, reason.text
            assert reason.json()["status"] == "completed"
            assert planned_by(stub, "Asked on A?") == ["replica-1"], "run by B, answered by A"

            chat = {"model": "reasoner", "messages": [{"role": "user", "content": "Chatted on A?"}]}
            completion = http.post("/v1/chat/completions", json=chat)
            assert completion.status_code == 200, completion.text
            assert completion.json()["choices"][0]["message"]["content"]
            with http.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as streamed:
                lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            assert planned_by(stub, "Chatted on A?") == ["replica-1", "replica-1"]

            submit(b.url, HELD)  # now no replica has a free slot
            until(
                lambda: sum("Part 4" in last for role, last in stub.received if role == "worker") == 2,
                10,
                "B busy",
            )
            queued = http.post("/v1/runs", json={"question": "Queued?"})
            assert queued.status_code == 202, "one run may wait (MAX_QUEUED_RUNS=1)"
            refused = httpx.post(f"{b.url}/v1/runs", json={"question": "One too many?"}, timeout=30)
            assert refused.status_code == 429, "the queue is counted across replicas"
            assert refused.headers["Retry-After"]
            assert refused.json()["error"]["code"] == "too_many_runs"
            assert http.get(f"/v1/runs/{queued.json()['run_id']}").json()["status"] == "queued"
    finally:
        cluster.kill()
