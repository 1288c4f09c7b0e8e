"""Several ``reasoner serve`` replicas on one Postgres database and one Redis, in front of the
scripted backend: any replica follows, cancels and resumes any run; runs are spread over the
replicas' free slots and executed once; a Postgres restart or a lost Redis degrades, never
breaks. Every replica calls the stub with its own API key, so the stub knows who made a call."""

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.storage.interface import TERMINAL
from api.storage.postgres_schema import STEPS
from tests.conftest import REPORT
from tests.stub_backend import StubBackend
from tests.support.cluster import Cluster, Follower, start, submit, view
from tests.support.runs import BODY, calls_for, cut_tokens, until, workers_received
from tests.support.services import CuttableProxy, PrivateRedis, restart_postgres


@pytest.fixture
def cluster_of(stub: StubBackend, tmp_path: Path, database: str, prefix: str) -> Iterator[Any]:
    started: list[Cluster] = []

    def make(n: int = 3, **env: object) -> Cluster:
        started.append(start(stub, tmp_path, database, prefix, n, **env))
        return started[-1]

    yield make
    for cluster in started:
        cluster.kill()


def test_a_run_is_followed_from_one_replica_and_cancelled_from_another(
    four_parts: StubBackend, cluster_of: Any
) -> None:
    four_parts.options.slow = {"Part 3": 3.0, "Part 4": 3.0}  # held past the cancel, not past the test
    four_parts.options.role_tokens_per_s = {"planner": 150.0}  # the plan streams: events arrive live
    a, b, c = cluster_of(3).replicas
    run_id = submit(a.url, BODY)
    on_a, on_b = Follower(a.url, run_id), Follower(b.url, run_id)
    until(lambda: on_b.names().count("task.completed") == 2, 20, "two workers' answers on B")
    until(lambda: len(workers_received(four_parts)) == 4, 10, "all four workers to be called")

    asked = time.perf_counter()
    response = httpx.post(f"{c.url}/v1/runs/{run_id}/cancel", timeout=30)
    took = time.perf_counter() - asked
    calls_then = len(four_parts.received)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    frames_a, frames_b = on_a.done(10), on_b.done(10)
    assert frames_b[-1].event == "run.cancelled"
    assert [f.id for f in frames_b] == [f.id for f in frames_a] == list(range(1, len(frames_a) + 1))
    # The held calls end at the stub: without the cancel, the synthesizer would be called now.
    until(lambda: calls_for(four_parts, "Part 3") and calls_for(four_parts, "Part 4"), 10, "held calls")
    assert len(four_parts.received) == calls_then, "no model call after the cancel"
    assert {key for key, _ in four_parts.callers} == {"replica-0"}, "A executed it"

    stored_on_a = {f.id: f.at for f in frames_a}  # A's followers see an event once it is stored
    both_on = max(frames_a[0].at, frames_b[0].at)  # events before that were replayed, not live
    lags = sorted(f.at - stored_on_a[f.id] for f in frames_b if stored_on_a[f.id] > both_on)
    assert len(lags) >= 5, f"only {len(lags)} events arrived live"
    p50 = statistics.median(lags)
    REPORT.append(
        f"replicas: events on B after stored on A: p50 {p50 * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms "
        f"({len(lags)} events); cancel from C answered in {took * 1000:.0f} ms"
    )
    assert p50 <= 0.05, f"p50 {p50 * 1000:.1f} ms"


def test_a_replica_killed_mid_run_is_resumed_by_another(four_parts: StubBackend, cluster_of: Any) -> None:
    lease_s = 3.0
    a, b, c = cluster_of(3, lease_s=lease_s).replicas
    run_id = submit(a.url, BODY)
    on_b = Follower(b.url, run_id)  # one stream, from before the crash to the end
    until(lambda: on_b.names().count("task.completed") == 2 and "plan" in on_b.names(), 20, "2 of 4 answers")
    until(lambda: len(workers_received(four_parts)) == 4, 10, "all four workers to be called")
    a.kill()
    killed = time.perf_counter()
    four_parts.options.slow = {}

    frames = on_b.done(lease_s + 30)
    resumed = [f for f in frames if f.event == "run.resumed"]
    assert len(resumed) == 1
    assert resumed[0].at - killed <= lease_s + 5, f"resumed {resumed[0].at - killed:.1f} s after the kill"
    assert [f.id for f in frames] == list(range(1, len(frames) + 1)), "one gap-free stream"
    assert frames[-1].event == "run.completed"

    final = view(c.url, run_id)
    assert final["status"] == "completed"
    assert (calls_for(four_parts, "Part 1"), calls_for(four_parts, "Part 2")) == (1, 1), "finished: once"
    assert (calls_for(four_parts, "Part 3"), calls_for(four_parts, "Part 4")) == (1, 1), "held: answered once"
    billed = sum(call.prompt_tokens + call.completion_tokens for call in four_parts.calls)
    counted = billed + cut_tokens(final["result"])
    assert final["result"]["usage"]["total_tokens"] == counted, (
        "the stub's record, and the cut calls as counted"
    )
    resumers = {key for key, role in four_parts.callers[-3:]}
    assert resumers <= {"replica-1", "replica-2"}
    REPORT.append(f"replicas: kill -9 → run.resumed on another replica after {resumed[0].at - killed:.1f} s")


def test_runs_are_spread_over_free_slots_and_executed_once(stub: StubBackend, cluster_of: Any) -> None:
    stub.options.latency_s = 0.05
    replicas = cluster_of(3, max_active_runs=4).replicas
    questions = [f"Question number {i}?" for i in range(30)]
    run_ids = [
        submit(replicas[i % 3].url, {"question": q, "max_revisions": 0}) for i, q in enumerate(questions)
    ]

    def statuses() -> list[str]:
        return [view(replicas[i % 3].url, run_id)["status"] for i, run_id in enumerate(run_ids)]

    until(lambda: all(s == "completed" for s in statuses()), 120, "every run to complete")
    for question in questions:
        for role in ("planner", "synthesizer"):
            made = [c for c in stub.calls_of(role) if question in str(c.body["messages"][-1]["content"])]
            assert len(made) == 1, f"{question} {role}: {len(made)} calls"
    shares = Counter(key for key, role in stub.callers if role == "planner")
    assert sum(shares.values()) == 30
    assert set(shares) == {"replica-0", "replica-1", "replica-2"}, shares
    REPORT.append(
        f"replicas: 30 runs round-robin, MAX_ACTIVE_RUNS=4 each: executed {sorted(shares.values())}"
    )


def migrations(database: str) -> list[tuple[int, str]]:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT version, applied_by FROM reasoner_migrations ORDER BY version").fetchall()


def test_replicas_starting_together_migrate_once(cluster_of: Any, database: str) -> None:
    a, b = cluster_of(2).replicas
    applied = migrations(database)
    assert [version for version, _ in applied] == list(range(1, len(STEPS) + 1))
    assert len({by for _, by in applied}) == 1, "one replica applied them"
    for replica in (a, b):
        assert httpx.get(f"{replica.url}/readyz", timeout=10).json() == {"status": "ok"}


def error_shaped(response: httpx.Response) -> bool:
    error = response.json().get("error")
    return isinstance(error, dict) and {"message", "type", "code"} <= set(error)


def test_a_postgres_restart_during_load_ends_every_run(stub: StubBackend, cluster_of: Any) -> None:
    stub.options.latency_s = 0.2
    a, b = cluster_of(2).replicas
    run_ids = [submit((a, b)[i % 2].url, {"question": f"Load {i}?", "max_revisions": 0}) for i in range(8)]
    answers: list[httpx.Response] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        try:
            with httpx.Client(timeout=30) as http:
                i = 0
                while not stop.is_set():
                    url = (a, b)[i % 2].url
                    answers.append(http.get(f"{url}/v1/runs/{run_ids[i % len(run_ids)]}"))
                    body = {"question": f"During {i}?", "max_revisions": 0}
                    answers.append(http.post(f"{url}/v1/runs", json=body))
                    i += 1
        except BaseException as exc:  # a replica that stopped answering fails the test
            failures.append(exc)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    away_s = restart_postgres()
    back = len(answers)
    until(lambda: len(answers) >= back + 10 or failures, 30, "the load to go on after the restart")
    stop.set()
    loader.join(30)
    assert not failures and not loader.is_alive(), failures
    assert a.process.poll() is None and b.process.poll() is None, "both replicas live"

    assert answers
    odd = [r for r in answers if r.status_code not in (200, 202) and not error_shaped(r)]
    assert not odd, [(r.status_code, r.text) for r in odd]
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {200, 202, 429, 503}, codes
    accepted = run_ids + [r.json()["run_id"] for r in answers if r.status_code == 202]

    def unfinished() -> list[str]:
        return [run_id for run_id in accepted if view(a.url, run_id)["status"] in ("queued", "running")]

    until(lambda: not unfinished(), 90, "every run to end")
    ends = Counter(view(b.url, run_id)["status"] for run_id in accepted)
    assert set(ends) <= {"completed", "failed"}, ends
    REPORT.append(
        f"replicas: Postgres restart ({away_s:.1f} s) under load: answers {dict(codes)}, runs {dict(ends)}"
    )


def test_streams_and_cancels_go_on_through_postgres_when_redis_is_lost(
    four_parts: StubBackend, cluster_of: Any
) -> None:
    four_parts.options.slow = {"Part 3": 3.0, "Part 4": 3.0}
    redis = PrivateRedis()
    try:
        a, b = cluster_of(2, redis_url=redis.url).replicas
        run_id = submit(a.url, BODY)
        on_b = Follower(b.url, run_id)
        until(lambda: on_b.names().count("task.completed") == 2, 20, "two workers' answers on B")
        redis.stop()
        lost_at = len(on_b.frames)
        frames = on_b.done(30)
        assert frames[-1].event == "run.completed"
        assert [f.id for f in frames] == list(range(1, len(frames) + 1))
        assert len(frames) > lost_at, "events after Redis was lost"
        assert httpx.get(f"{b.url}/readyz", timeout=10).json()["status"] == "degraded"

        four_parts.options.slow = {"Part 3": 120.0, "Part 4": 120.0}
        held = submit(a.url, BODY)
        on_b = Follower(b.url, held)
        until(lambda: on_b.names().count("task.completed") == 2, 20, "two answers of the held run on B")
        cancelled = httpx.post(f"{b.url}/v1/runs/{held}/cancel", timeout=30)
        assert cancelled.json()["status"] == "cancelled", "the cancel reached A through the run's row"
        assert on_b.done(10)[-1].event == "run.cancelled"
    finally:
        redis.stop()


def test_while_postgres_is_lost_requests_get_503_and_the_run_finishes_after(
    four_parts: StubBackend, cluster_of: Any, database: str
) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    four_parts.options.slow = {"Part 3": 2.0, "Part 4": 2.0}
    via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert via_proxy != database, "the test's Postgres is the machine's, on 127.0.0.1:5432"
    try:
        (a,) = cluster_of(1, database_url=via_proxy).replicas
        run_id = submit(a.url, BODY)
        until(lambda: len(workers_received(four_parts)) == 4, 10, "all four workers to be called")
        proxy.cut()
        with httpx.Client(base_url=a.url, timeout=30) as http:
            lost = time.perf_counter()
            answers = [http.get(f"/v1/runs/{run_id}"), http.post("/v1/runs", json=BODY), http.get("/readyz")]
            took = (time.perf_counter() - lost) / len(answers)
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert error_shaped(answer) and answer.json()["error"]["code"] == "storage_unavailable"
        proxy.restore()  # the pool reconnects with a backoff: a few more 503s may come first
        final = until(lambda: (v := view(a.url, run_id)).get("status") in TERMINAL and v, 60, "the run's end")
        assert final["status"] == "completed", "its writes waited for the database"
        REPORT.append(f"replicas: Postgres lost: 503 storage_unavailable after {took:.1f} s per request")
    finally:
        proxy.cut()
