"""Exactly once under freezes, with replicas on Postgres and the scripted backend (which records
every call and which replica made it): a replica frozen past its lease makes no model call once
it continues."""

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, start, submit, view
from tests.conftest import REPORT
from tests.runs import until
from tests.stub_backend import StubBackend, subquestion_of

CHAIN = [
    {"id": "t1", "question": "Part 1: which country won the 2018 World Cup?", "depends_on": []},
    {"id": "t2", "question": "Part 2: who was president of that country then?", "depends_on": ["t1"]},
    {"id": "t3", "question": "Part 3: how old was that president at the time?", "depends_on": ["t2"]},
    {"id": "t4", "question": "Part 4: where was the 2018 final played?", "depends_on": []},
]
"""A chain (t1 → t2 → t3): the moment an answer arrives, the next step would be called."""


def body(question: str) -> dict[str, Any]:
    return {"question": question, "max_subtasks": 4, "max_revisions": 0}


@pytest.fixture
def cluster_of(stub: StubBackend, tmp_path: Path, prefix: str) -> Iterator[Any]:
    started: list[Cluster] = []

    def make(database: str, n: int, **env: object) -> Cluster:
        started.append(start(stub, tmp_path, database, prefix, n, **env))
        return started[-1]

    yield make
    for cluster in started:
        cluster.kill()


def test_a_replica_frozen_past_its_lease_makes_no_model_call_once_it_continues(
    stub: StubBackend, cluster_of: Any, database: str
) -> None:
    """A's runs each wait on t1 when A is stopped; t1's answers arrive while it is stopped, and
    B takes the runs over and completes them. Continued, A has answers in hand that would start
    t2 at once: it must call nothing, and let the runs go."""
    lease_s = 3
    runs = 3
    stub.options.plan = CHAIN
    stub.options.slow = {"Part 1": 4.0, "Part 4": 4.0}  # out when A stops, answered while it is
    a, b = cluster_of(database, 2, lease_s=lease_s).replicas
    run_ids = [submit(a.url, body(f"Frozen question number {i}?")) for i in range(runs)]

    def out(part: str) -> int:
        return sum(r == "worker" and part in subquestion_of(last) for r, last in stub.received)

    def answered(part: str) -> int:
        return sum(
            part in subquestion_of(str(c.body["messages"][-1]["content"])) for c in stub.calls_of("worker")
        )

    # t1 and t4 of every run out: A has nothing more to send until an answer comes.
    until(lambda: out("Part 1") + out("Part 4") == 2 * runs, 20, "A to call t1 and t4 of every run")
    a.process.send_signal(signal.SIGSTOP)
    try:
        stub.options.slow = {}
        for run_id in run_ids:
            until(lambda r=run_id: view(b.url, r).get("status") == "completed", 60, "B to complete the runs")
        until(lambda: answered("Part 1") == 2 * runs, 20, "A's t1 calls to be answered (B made its own)")
        stored = [view(b.url, run_id) for run_id in run_ids]
    finally:
        a.process.send_signal(signal.SIGCONT)
    thawed = len(stub.callers)
    until(lambda: a.log.read_text().count("stopping it here") >= runs, 20, "A to let every run go")
    calls = zip(stub.callers[thawed:], stub.received[thawed:], strict=True)
    made = [f"{role}: {subquestion_of(last)}" for (key, role), (_, last) in calls if key == "replica-0"]
    REPORT.append(
        f"exactly once: model calls by a replica after SIGSTOP past its lease: {len(made)} ({runs} runs)"
    )
    assert made == [], "a replica that lost its lease called the model"
    assert [view(b.url, run_id) for run_id in run_ids] == stored, "the thawed replica changed nothing"
