"""Exactly once under freezes and outages, with replicas on Postgres and the scripted backend
(which records every call and which replica made it): a replica frozen past its lease makes no
model call once it continues, and an outage of the database longer than the lease neither makes
a call again nor stores the result of a second execution."""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.storage.interface import TERMINAL
from api.storage.leases import RECONNECT_S
from api.storage.sqlite import SQLiteRunStore
from tests.conftest import REPORT
from tests.stub_backend import Recorded, StubBackend, subquestion_of
from tests.support.cluster import Cluster, start, submit, view
from tests.support.runs import until
from tests.support.services import PrivatePostgres

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


OUTAGE_S = 20
RUNS = 8


def test_a_postgres_outage_longer_than_the_lease_makes_no_call_twice(
    stub: StubBackend, cluster_of: Any
) -> None:
    """Two replicas on a Postgres of the test's own; the database stops for longer than the
    lease, then starts again. Half the runs are one step from their end when it stops (they end
    during the outage, their final writes queued), half have just been planned (their leases
    lapse by their replicas' clocks before they end: they stop, and are resumed from their
    journals once the database is back). Every call is made once, and every stored answer is
    the one its run's first synthesis gave."""
    lease_s = 6
    stub.options.plan = CHAIN
    stub.options.latency_s = 1.0
    stub.options.numbered = True
    questions = [f"Outage question number {i}?" for i in range(RUNS)]

    def run_of(call: Recorded) -> int:
        return next(i for i, q in enumerate(questions) if q in str(call.body["messages"][-1]["content"]))

    def key(call: Recorded) -> tuple[str, int, str]:
        return call.role, run_of(call), subquestion_of(str(call.body["messages"][-1]["content"]))

    def out(role: str, part: str = "") -> int:
        """Calls of ``role`` (whose sub-question holds ``part``) that went out."""
        return sum(r == role and part in subquestion_of(last) for r, last in stub.received)

    postgres = PrivatePostgres()
    try:
        a, b = cluster_of(postgres.url, 2, lease_s=lease_s).replicas
        early = [submit((a, b)[i % 2].url, body(q)) for i, q in enumerate(questions[: RUNS // 2])]
        until(lambda: out("worker", "Part 3") == RUNS // 2, 20, "the first half to call t3")
        stub.options.slow = {"Part 3": 3.0}  # the second half's t3: it cannot end before its lease
        late = [submit((a, b)[i % 2].url, body(q)) for i, q in enumerate(questions[RUNS // 2 :])]
        until(lambda: out("planner") == RUNS, 20, "the second half to call the planner")
        postgres.stop()
        time.sleep(OUTAGE_S)  # the outage itself
        postgres.start()
        run_ids = early + late
        until(
            lambda: all(view(a.url, run_id).get("status") in TERMINAL for run_id in run_ids),
            120,
            "every run to end",
        )
        finals = [view(b.url, run_id) for run_id in run_ids]
        let_go = sum(replica.log.read_text().count("stopping it here") for replica in (a, b))
    finally:
        postgres.close()

    made = Counter(key(c) for c in stub.calls)
    seen: set[tuple[str, int, str]] = set()
    again_tokens = 0
    for call in stub.calls:
        if key(call) in seen:
            again_tokens += call.prompt_tokens + call.completion_tokens
        seen.add(key(call))
    again = {k: n - 1 for k, n in made.items() if n > 1}
    first_answers: dict[int, str] = {}
    for call in stub.calls_of("synthesizer"):
        first_answers.setdefault(run_of(call), call.reply.strip())
    second = [i for i, final in enumerate(finals) if final["result"]["answer"] != first_answers.get(i)]
    REPORT.append(
        f"exactly once: Postgres stopped {OUTAGE_S} s (LEASE_S={lease_s}), {RUNS} runs on 2 replicas "
        f"({let_go} let go at their lease's local deadline): {sum(again.values())} calls made again "
        f"({again_tokens} tokens), {len(second)} results of a second execution"
    )
    assert [final["status"] for final in finals] == ["completed"] * RUNS
    assert again == {}, "calls made again"
    assert second == [], "stored results of a second execution"


async def test_on_sqlite_a_live_owners_expired_lease_waits_until_the_claimer_has_been_back_a_lease(
    tmp_path: Path,
) -> None:
    """Two processes on one SQLite file (here, two stores): the owner's lease lapses by its own
    clock first; a process that has not been in steady contact with the store for a lease (it
    just started, or lost the store) does not take it yet, and does after."""
    lease_s = 1.0
    path = tmp_path / "reasoner.db"
    owner = SQLiteRunStore(path)
    await owner.open()
    await owner.create("run_x", "Q?", {"question": "Q?"}, lease_s=lease_s)
    assert owner.holds("run_x")
    opened = time.monotonic()
    claimer = SQLiteRunStore(path)
    await claimer.open()
    try:
        while owner.holds("run_x"):
            await asyncio.sleep(0.05)
        assert await claimer.claim(lease_s) == [], "before the store's lease ends"
        while not (claims := await claimer.claim(lease_s)):
            assert time.monotonic() - opened < lease_s + RECONNECT_S + 5, "never claimed"
            await asyncio.sleep(0.05)
        assert time.monotonic() - opened >= lease_s + RECONNECT_S, "claimed before it was back a lease"
        assert [c.run.id for c in claims] == ["run_x"]
        assert claimer.holds("run_x")
        assert await owner.renew(lease_s) == set(), "the owner learns it lost the run"
        assert not owner.holds("run_x")
    finally:
        await claimer.close()
        await owner.close()
