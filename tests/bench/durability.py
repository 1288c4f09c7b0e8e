"""What durability costs: checkpoints and the call journal per run (11), and a run killed mid-way
taken up by the next process (12); each with its printed lines."""

import asyncio
import dataclasses
import logging
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from langgraph.types import Durability

from api.runs.worker import StoredCalls
from api.storage.interface import Event
from api.storage.sqlite import SQLiteRunStore
from graph import (
    Result,
    RunContext,
    TiktokenCounter,
    execute,
)
from graph.events import RUN_COMPLETED, RunEnded
from graph.journal import Journal
from tests.bench.harness import (
    QUESTION,
    QUICK,
    engine,
    reset,
    service,
    stub,
)
from tests.stub_backend import StubBackend, StubOptions
from tests.support.sse import frames

# 11. durability: what checkpoints cost a run -------------------------------------------------

DURABILITY_MODES: tuple[tuple[str, Durability | None], ...] = (
    ("none", None),
    ("journal", None),
    ("sync", "sync"),
    ("async", "async"),
    ("exit", "exit"),
)
"""none: no checkpointer and no durable call journal; journal: the call journal only (what a
resume needs to spare the calls that returned); sync, async, exit: the journal and LangGraph's
checkpointer with that durability mode."""

CHECKPOINT_BYTES = (
    "SELECT (SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints "
    "WHERE thread_id=?1) + (SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id=?1)"
)
JOURNAL_BYTES = (
    "SELECT COALESCE(SUM(LENGTH(CAST(row AS BLOB)) + COALESCE(LENGTH(CAST(output AS BLOB)), 0)), 0) "
    "FROM calls WHERE run_id=?1"
)


async def stored_bytes(store: SQLiteRunStore, run_id: str) -> tuple[int, int]:
    """The run's checkpoint rows and call-journal rows, in bytes."""
    checkpoints = await store._query(CHECKPOINT_BYTES, (run_id,))
    journal = await store._query(JOURNAL_BYTES, (run_id,))
    return int(checkpoints[0][0]), int(journal[0][0])


async def database_bytes(store: SQLiteRunStore) -> int:
    """The database's size with its write-ahead log folded in."""
    await store._query("PRAGMA wal_checkpoint(TRUNCATE)", ())
    size = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    rows = await store._query(size, ())
    return int(rows[0][0])


async def durable_run(
    store: SQLiteRunStore, graph: Any, mode: Durability | None, journal: bool, n: int, run_id: str
) -> tuple[float, float, Result]:
    """One run stored as the service stores it: wall ms until its writes are committed, and the
    CPU ms of this process (the engine and the store's threads; the stub runs in its own)."""

    async def ignore(name: str, data: dict[str, Any]) -> None:
        return None

    await store.create(run_id, QUESTION, {"question": QUESTION}, lease_s=60)
    ctx = RunContext(max_subtasks=n, max_revisions=1, max_output_tokens=512, max_concurrency=64)
    if journal:
        ctx = dataclasses.replace(ctx, journal=Journal(StoredCalls(store, run_id)))
    count = await TiktokenCounter().count(QUESTION)
    t0, c0 = time.perf_counter(), time.process_time()
    durability = {"durability": mode} if mode else {}
    result = await execute(
        graph, QUESTION, ctx, run_id=run_id, question_count=count, emit=ignore, **durability
    )
    assert await store.flush(10), "the run's writes were committed"
    ms, cpu_ms = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    assert result["status"] == "completed", result["error"]
    return ms, cpu_ms, result


async def finish(store: SQLiteRunStore, run_id: str, result: Result) -> None:
    """The service's own end of a run: its checkpoints and call outputs are deleted."""
    ended = RunEnded(run_id=run_id, result=result, error=None)
    await store.finish(run_id, "completed", result, Event(1, run_id, RUN_COMPLETED, ended))


def durability(report: dict[str, Any]) -> None:
    """Each mode's cost per run at 4 and 16 sub-questions (engine in-process, one database per
    mode, modes interleaved run by run so that drift hits all alike), and what stays in the
    database once the run is finished."""
    warmup, runs = (2, 8) if QUICK else (3, 40)
    table = []
    with stub(0.0) as backend, tempfile.TemporaryDirectory(prefix="reasoner-bench-") as data:

        async def main() -> None:
            stores = {name: SQLiteRunStore(Path(data) / name / "reasoner.db") for name, _ in DURABILITY_MODES}
            for store in stores.values():
                await store.open()
            graphs = {
                name: engine(backend, checkpointer=stores[name].checkpointer if mode else None)
                for name, mode in DURABILITY_MODES
            }
            for n in (4, 16):
                ms: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
                sizes: dict[str, list[tuple[int, int, int, int]]] = {name: [] for name in stores}
                start: dict[str, int] = {}
                for i in range(warmup + runs):
                    reset(backend)
                    for name, mode in DURABILITY_MODES:
                        store, run_id = stores[name], f"run_{name}_{n}_{i}"
                        if i == warmup:
                            start[name] = await database_bytes(store)
                        wall, cpu, result = await durable_run(
                            store, graphs[name], mode, name != "none", n, run_id
                        )
                        during = await stored_bytes(store, run_id)
                        await finish(store, run_id, result)
                        if i >= warmup:
                            ms[name].append((wall, cpu))
                            sizes[name].append((*during, *await stored_bytes(store, run_id)))
                base = [statistics.median(m[k] for m in ms["none"]) for k in (0, 1)]
                for name, store in stores.items():
                    growth = (await database_bytes(store) - start[name]) / runs
                    p50, cpu = (statistics.median(m[k] for m in ms[name]) for k in (0, 1))
                    table.append({
                        "subtasks": n, "mode": name, "p50_ms": p50, "extra_ms": p50 - base[0],
                        "cpu_ms": cpu, "extra_cpu_ms": cpu - base[1],
                        "checkpoint_bytes": statistics.median(s[0] for s in sizes[name]),
                        "journal_bytes": statistics.median(s[1] for s in sizes[name]),
                        "checkpoint_bytes_kept": max(s[2] for s in sizes[name]),
                        "journal_bytes_kept": statistics.median(s[3] for s in sizes[name]),
                        "db_growth_bytes_per_run": growth,
                    })  # fmt: skip
            for store in stores.values():
                await store.close()

        asyncio.run(main())
    report["durability"] = {"runs": runs, "table": table}


# 12. restart: a run killed mid-way, taken up by the next process -----------------------------

RESTART_PLAN: list[dict[str, Any]] = [
    {"id": f"t{i}", "question": f"Part {i} of the question?", "depends_on": []} for i in range(1, 5)
]
HELD = {"Part 3": 600.0, "Part 4": 600.0}
"""The stub holds these two workers' calls until the process is killed (and far beyond)."""


def start_and_kill(backend: StubBackend, url: str, proc: subprocess.Popen[bytes]) -> tuple[str, int]:
    """Start a run, follow it until its plan and 2 of its 4 tasks are done while the other 2
    are held, then ``kill -9`` the process; returns the run id and the last event id seen."""
    body = {"question": QUESTION, "max_subtasks": len(RESTART_PLAN), "max_revisions": 0}
    seen: list[str] = []
    last = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        run_id = http.post("/v1/runs", json=body).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for frame in frames(response):
                if not frame.comment:
                    seen.append(str(frame.event))
                    last = frame.id or last
                    if seen.count("task.completed") == 2 and "plan" in seen:
                        break
    deadline = time.monotonic() + 10
    while sum(role == "worker" for role, _ in backend.received) < len(RESTART_PLAN):
        assert time.monotonic() < deadline, "all four workers were called"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return run_id, last


def restart(report: dict[str, Any]) -> None:
    """``kill -9`` a service mid-run, start another on the same DATA_DIR: from its process start,
    how long until /healthz answers, until the run's first new event and until it completes
    (as a client following the run sees them); against the first process's own start."""
    samples = []
    backend = StubBackend(StubOptions(plan=RESTART_PLAN)).start()
    base = backend.base_url.removesuffix("/v1")
    try:
        for _ in range(2 if QUICK else 5):
            backend.reset()
            backend.options.slow = dict(HELD)
            with tempfile.TemporaryDirectory(prefix="reasoner-bench-") as data:
                t0 = time.perf_counter()
                with service(base, data) as (url, proc):
                    fresh = time.perf_counter() - t0
                    run_id, last = start_and_kill(backend, url, proc)
                backend.options.slow = {}
                t0 = time.perf_counter()
                with (
                    service(base, data) as (url, _),
                    httpx.Client(base_url=url, timeout=60) as http,
                ):
                    sample = {"fresh_healthz_s": fresh, "healthz_s": time.perf_counter() - t0}
                    headers = {"Last-Event-ID": str(last)}
                    with http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
                        for frame in frames(response):
                            if frame.comment:
                                continue
                            if "first_event" not in sample:
                                sample |= {"first_event": frame.event, "first_event_s": frame.at - t0}
                            if frame.event == "run.completed":
                                sample["completed_s"] = frame.at - t0
                                break
                samples.append(sample)
    finally:
        uvicorn = logging.getLogger("uvicorn.error")
        level = uvicorn.level
        uvicorn.setLevel(logging.CRITICAL)  # the held calls are cancelled: expected, not news
        backend.stop()
        uvicorn.setLevel(level)
    figures = ("fresh_healthz_s", "healthz_s", "first_event_s", "completed_s")
    report["restart"] = {
        "runs": len(samples),
        "first_events": sorted({str(s["first_event"]) for s in samples}),
        **{key: statistics.median(s[key] for s in samples) for key in figures},
    }


def print_durability(report: dict[str, Any]) -> None:
    d = report["durability"]
    print(f"\n11. durability per run, engine in-process, zero-latency stub, p50 of {d['runs']} runs: wall "
          "until the run's writes are committed and this process's CPU, extra over none; bytes stored "
          "while it runs, kept once it is finished, and the database's growth per finished run")  # fmt: skip
    print(f"{'sub-q':>6}{'mode':>9}{'p50 ms':>9}{'extra':>8}{'CPU ms':>8}{'extra':>8}{'checkpoint B':>14}"
          f"{'journal B':>11}{'kept: ckpt B':>14}{'journal B':>11}{'db B/run':>10}")  # fmt: skip
    for r in d["table"]:
        print(f"{r['subtasks']:>6}{r['mode']:>9}{r['p50_ms']:>9.1f}{r['extra_ms']:>+8.1f}"
              f"{r['cpu_ms']:>8.1f}{r['extra_cpu_ms']:>+8.1f}"
              f"{r['checkpoint_bytes']:>14.0f}{r['journal_bytes']:>11.0f}{r['checkpoint_bytes_kept']:>14.0f}"
              f"{r['journal_bytes_kept']:>11.0f}{r['db_growth_bytes_per_run']:>10.0f}")  # fmt: skip


def print_restart(report: dict[str, Any]) -> None:
    r = report["restart"]
    print(f"\n12. restart after kill -9 mid-run (2 of 4 tasks done), p50 of {r['runs']}, from the new "
          f"process's start: /healthz answers {r['healthz_s']:.2f} s (the first process: "
          f"{r['fresh_healthz_s']:.2f} s), the run's first new event ({'/'.join(r['first_events'])}) "
          f"{r['first_event_s']:.2f} s, run.completed {r['completed_s']:.2f} s")  # fmt: skip
