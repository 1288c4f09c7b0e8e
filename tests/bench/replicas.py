"""`make bench`, replicas: ``reasoner serve`` on Postgres + Redis against the scripted backend
(in a thread of this process), each measurement on a scratch database and Redis prefix of its
own, its replicas killed at the end.

1. what Postgres (+ Redis) costs a run against SQLite: one process each, runs interleaved;
2. how late a replica that does not run a run streams its events, against the one that does;
3. throughput with 1, 2 and 3 replicas (MAX_ACTIVE_RUNS=4 each) against a 1 s-per-call backend;
4. what each replica takes of the shared services: Postgres connections (sampled from
   pg_stat_activity, per replica by application_name) and Redis messages (counted by a
   subscriber of the deployment's channels), against Postgres' max_connections.

Alone: ``python -m tests.bench.replicas`` (prints the table, writes replicas.png, leaves
results.json as it is).
"""

import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from api.settings import Settings
from api.storage.interface import TERMINAL
from tests.bench.harness import QUESTION, QUICK, RESULTS, pct, proc_cpu_s
from tests.bench.shared_services import Sampler, postgres_limits
from tests.stub_backend import StubBackend, StubOptions
from tests.support.cluster import Cluster, Follower, submit
from tests.support.served import Served
from tests.support.services import REDIS_URL, redis_prefix, scratch_database
from tests.support.sse import Frame

POOL_SIZE = int(Settings.model_fields["database_pool_size"].default)
"""DATABASE_POOL_SIZE's default: the most Postgres connections one replica opens."""
SETTINGS: dict[str, object] = {"llm_stream": False}
"""As the rest of the bench runs the service: the synthesizer's call is not streamed."""


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@contextmanager
def cluster(stub: StubBackend, n: int, **env: object) -> Iterator[tuple[Cluster, str, str]]:
    """``n`` replicas on a scratch database and Redis prefix: (the replicas, database URL,
    prefix). Replica i calls the stub with API key ``replica-<i>`` and names its Postgres
    connections ``replica-<i>`` (application_name)."""
    with (
        scratch_database() as database,
        redis_prefix() as prefix,
        tempfile.TemporaryDirectory(prefix="reasoner-bench-") as tmp,
    ):
        replicas = [
            Served(
                stub, Path(tmp) / f"replica{i}", wait=False, llm_api_key=f"replica-{i}",
                database_url=f"{database}?application_name=replica-{i}", redis_url=REDIS_URL,
                redis_prefix=prefix, **{**SETTINGS, **env},
            )
            for i in range(n)
        ]  # fmt: skip
        group = Cluster(replicas)
        try:
            for replica in replicas:
                replica.ready()
            yield group, database, prefix
        finally:
            group.kill()


def wait_ended(urls: list[str], run_ids: list[str], timeout_s: float = 180) -> dict[str, dict[str, Any]]:
    """Poll until every run has ended; their final views. Runs are polled in order, a round
    stops at the first one still going (runs end roughly in the order they were submitted), so
    the replicas answer a few requests a second, not one per run."""
    ended: dict[str, dict[str, Any]] = {}
    pending = list(range(len(run_ids)))
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=30) as http:
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs still going after {timeout_s} s"
            for i in list(pending):
                view = http.get(f"{urls[i % len(urls)]}/v1/runs/{run_ids[i]}").json()
                if view["status"] not in TERMINAL:
                    break
                ended[run_ids[i]] = view
                pending.remove(i)
            else:
                continue
            time.sleep(0.1)
    return ended


# 1. Postgres against SQLite, per run -------------------------------------------------------


def store_overhead(stub: StubBackend) -> dict[str, Any]:
    """Sequential POST /v1/reason against a zero-latency stub, one process on SQLite and one on
    Postgres + Redis, interleaved run by run (drift hits both alike)."""
    warmup, runs = (3, 20) if QUICK else (5, 60)
    stub.options.latency_s = 0.0
    body = {"question": QUESTION, "max_subtasks": 4, "max_revisions": 0}
    with (
        scratch_database() as database,
        redis_prefix() as prefix,
        tempfile.TemporaryDirectory(prefix="reasoner-bench-") as tmp,
    ):
        servers = {
            "sqlite": Served(stub, Path(tmp) / "sqlite", wait=False, llm_api_key="sqlite", **SETTINGS),
            "postgres": Served(
                stub, Path(tmp) / "postgres", wait=False, llm_api_key="postgres", database_url=database,
                redis_url=REDIS_URL, redis_prefix=prefix, **SETTINGS,
            ),
        }  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, float] = {}
        try:
            for server in servers.values():
                server.ready()
            with httpx.Client(timeout=60) as http:
                for i in range(warmup + runs):
                    if i == warmup:
                        cpu = {name: proc_cpu_s(s.process.pid) for name, s in servers.items()}
                    order = list(servers.items())
                    for name, server in order if i % 2 else reversed(order):
                        t0 = time.perf_counter()
                        response = http.post(f"{server.url}/v1/reason", json=body)
                        took = time.perf_counter() - t0
                        assert response.status_code == 200, response.text
                        assert response.json()["status"] == "completed", response.text
                        if i >= warmup:
                            samples[name].append(took)
            cpu = {name: proc_cpu_s(s.process.pid) - cpu[name] for name, s in servers.items()}
        finally:
            for server in servers.values():
                server.kill()
    out: dict[str, Any] = {"runs": runs, "subtasks": 4}
    for name, values in samples.items():
        out[name] = {
            "p50_ms": statistics.median(values) * 1000,
            "p90_ms": pct(values, 0.9) * 1000,
            "cpu_ms_per_run": cpu[name] / runs * 1000,
        }
    out["extra_p50_ms"] = out["postgres"]["p50_ms"] - out["sqlite"]["p50_ms"]
    out["extra_p90_ms"] = out["postgres"]["p90_ms"] - out["sqlite"]["p90_ms"]
    out["extra_cpu_ms_per_run"] = out["postgres"]["cpu_ms_per_run"] - out["sqlite"]["cpu_ms_per_run"]
    return out


# 2. events on another replica --------------------------------------------------------------


def event_lag(stub: StubBackend) -> dict[str, Any]:
    """Runs submitted to A, followed on A and B at once: for every event stored after both
    streams were on, when B delivered it after the replica running the run did (that one's
    followers see an event the moment it is stored; the other reads the store when Redis
    says the run changed)."""
    warmup, runs = (2, 10) if QUICK else (3, 20)
    stub.options.latency_s = 0.05
    lags: list[float] = []
    owners: Counter[str] = Counter()
    with cluster(stub, 2) as (group, _, _):
        urls = {f"replica-{i}": replica.url for i, replica in enumerate(group.replicas)}
        for i in range(warmup + runs):
            seen = len(stub.callers)
            body = {"question": f"{QUESTION} ({i})", "max_subtasks": 4, "max_revisions": 0}
            run_id = submit(urls["replica-0"], body)
            followers = {key: Follower(url, run_id) for key, url in urls.items()}
            streams: dict[str, list[Frame]] = {key: f.done(60) for key, f in followers.items()}
            assert streams["replica-0"][-1].event == "run.completed"
            ids = [[f.id for f in frames] for frames in streams.values()]
            assert ids[0] == ids[1], "both replicas stream the same events"
            owner = next(key for key, role in stub.callers[seen:] if role == "planner")
            other = next(key for key in urls if key != owner)
            if i < warmup:
                continue
            owners[owner] += 1
            stored = {f.id: f.at for f in streams[owner]}
            both_on = max(frames[0].at for frames in streams.values())  # before: replayed, not live
            lags += [f.at - stored[f.id] for f in streams[other] if stored[f.id] > both_on]
    return {
        "runs": runs,
        "latency_s": 0.05,
        "subtasks": 4,
        "events": len(lags),
        "run_by": dict(owners),
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": pct(lags, 0.99) * 1000,
        "max_ms": max(lags) * 1000,
    }


# 3, 4. throughput with 1-3 replicas, and what they take of Postgres and Redis ---------------


def throughput_with(stub: StubBackend, n: int, runs: int) -> tuple[dict[str, Any], list[Any]]:
    """``runs`` runs submitted at once, round-robin over ``n`` replicas (4 slots each), against
    a 1 s-per-call stub: runs/s from the first submission to the last run's end (the store's
    clock: its updated_at)."""
    latency = 1.0
    with cluster(stub, n, max_active_runs=4) as (group, database, prefix):
        urls = [replica.url for replica in group.replicas]
        stub.options.latency_s = 0.0
        warm = [
            submit(urls[i % n], {"question": f"Warm-up {i}?", "max_subtasks": 3, "max_revisions": 0})
            for i in range(2 * n)
        ]
        wait_ended(urls, warm, 60)
        stub.options.latency_s = latency
        sampler = Sampler(database, prefix)
        seen = len(stub.callers)
        cpu0 = [proc_cpu_s(replica.process.pid) for replica in group.replicas]
        busy0, total0 = machine_cpu()
        bodies = [
            {"question": f"{QUESTION} (run {i} of {runs})", "max_subtasks": 3, "max_revisions": 0}
            for i in range(runs)
        ]
        first = time.time()
        with ThreadPoolExecutor(8) as pool:
            run_ids = list(pool.map(lambda i: submit(urls[i % n], bodies[i]), range(runs)))
        submitted = time.time() - first
        views = wait_ended(urls, run_ids)
        busy1, total1 = machine_cpu()
        cpu = sum(proc_cpu_s(r.process.pid) - c for r, c in zip(group.replicas, cpu0, strict=True))
        time.sleep(0.3)  # the last messages reach the subscriber
        sampler.finish()
        stub.options.latency_s = 0.0
    statuses = Counter(view["status"] for view in views.values())
    assert statuses == {"completed": runs}, statuses
    ends = [wall(view["updated_at"]) for view in views.values()]
    starts = {
        view["run_id"]: min(wall(c["started_at"]) for c in view["result"]["calls"]) for view in views.values()
    }
    executing = [wall(v["updated_at"]) - starts[v["run_id"]] for v in views.values()]
    waiting = [starts[v["run_id"]] - wall(v["created_at"]) for v in views.values()]
    handoffs = [  # a run that waited for a slot: from the last run's end before it started
        start - max(end for end in ends if end < start)
        for start, queued in zip(starts.values(), waiting, strict=True)
        if queued > 0.5 and any(end < start for end in ends)
    ]
    took = max(ends) - first
    waves = -(-runs // (4 * n))
    row = {
        "replicas": n,
        "runs": runs,
        "latency_s": latency,
        "wall_s": took,
        "runs_per_s": runs / took,
        "ideal_runs_per_s": runs / (waves * statistics.median(executing)),
        "submit_s": submitted,
        "slots_full_s": sorted(starts.values())[min(runs, 4 * n) - 1] - first,
        "run_p50_s": statistics.median(executing),
        "run_max_s": max(executing),
        "queued_p50_s": statistics.median(waiting),
        "handoff_p50_ms": statistics.median(handoffs) * 1000 if handoffs else None,
        "handoff_max_ms": max(handoffs) * 1000 if handoffs else None,
        "replica_cpu_ms_per_run": cpu / runs * 1000,
        "machine_busy": (busy1 - busy0) / (total1 - total0),
        **sampler.figures(runs, n),
    }
    made = stub.callers[seen:]
    row["runs_by_replica"] = dict(sorted(Counter(key for key, role in made if role == "planner").items()))
    row["calls_per_run"] = {role: count / runs for role, count in Counter(role for _, role in made).items()}
    series = [(t - sampler.samples[0][0], by_app) for t, by_app in sampler.samples]
    return row, series


# the section -------------------------------------------------------------------------------


def replicas(report: dict[str, Any]) -> None:
    """Fills ``report["replicas"]``."""
    runs = 24
    with StubBackend(StubOptions(subtasks=4)) as stub:
        overhead = store_overhead(stub)
        lag = event_lag(stub)
        table, series = [], []
        for n in (1, 2, 3):
            row, series = throughput_with(stub, n, runs)
            table.append(row)
    limits = postgres_limits()
    usable = limits["max_connections"] - limits["superuser_reserved_connections"]
    top = table[-1]
    per_replica = max(top["pg_peak_by_replica"].values())
    report["replicas"] = {
        "store_overhead": overhead,
        "event_lag": lag,
        "throughput": table,
        "scaling_3_vs_1": table[-1]["runs_per_s"] / table[0]["runs_per_s"],
        "connections_3": [
            {"t": round(t, 2), **{app: c for app, (c, _) in sorted(by_app.items())}} for t, by_app in series
        ],
        "limits": {
            **limits,
            "pool_size": POOL_SIZE,
            "replicas_fit_at_pool_size": usable // POOL_SIZE,
            "peak_connections_per_replica": per_replica,
            "replicas_fit_at_peak": usable // max(1, per_replica),
            "redis_publishes_per_run": top["redis_publishes_per_run"],
            "redis_deliveries_per_run_at_3": top["redis_deliveries_per_run"],
        },
    }


if __name__ == "__main__":
    from tests.bench.report import plot_replicas, print_replicas

    RESULTS.mkdir(parents=True, exist_ok=True)
    alone: dict[str, Any] = {}
    t0 = time.perf_counter()
    replicas(alone)
    print(f"[replicas done in {time.perf_counter() - t0:.0f} s]")
    print_replicas(alone)
    plot_replicas(alone)
    print(f"\nwritten: {RESULTS / 'replicas.png'}")
