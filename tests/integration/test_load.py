"""A burst of 200 runs at once against a fast scripted backend: no errors, no lost runs,
consistent ledgers, and memory back to its level after the burst."""

import asyncio
import gc
import re
import statistics
import time
from datetime import datetime
from pathlib import Path

import httpx

from api.settings import Settings
from tests.conftest import REPORT, Service, stub_backend
from tests.stub_backend import StubBackend

RUNS = 200
QUESTION = re.compile(r"Question number \d+\?")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def burst(url: str) -> tuple[list[str], float]:
    """Submit every run at once, then follow each to its end (a bounded connection pool: the
    client must not starve the service it shares this process with)."""
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def submit(i: int) -> str:
            response = await http.post("/v1/runs", json={"question": f"Question number {i}?"})
            assert response.status_code == 202, response.text
            run_id: str = response.json()["run_id"]
            return run_id

        async def follow(run_id: str) -> None:
            last = ""
            async with http.stream("GET", f"/v1/runs/{run_id}/events") as events:
                async for line in events.aiter_lines():
                    if line.startswith("event: "):
                        last = line
            assert last == "event: run.completed", (run_id, last)

        t0 = time.perf_counter()
        run_ids = await asyncio.gather(*[submit(i) for i in range(RUNS)])
        await asyncio.gather(*[follow(run_id) for run_id in run_ids])
        return run_ids, time.perf_counter() - t0


def billed_per_run_and_node(stub: StubBackend) -> dict[tuple[str, str], int]:
    """What the stub billed, by question (each run's is unique and in every prompt) and role."""
    billed: dict[tuple[str, str], int] = {}
    for call in stub.calls:
        found = QUESTION.search(str(call.body["messages"][-1]["content"]))
        assert found is not None, call.body["messages"][-1]
        key = (found.group(), call.role)
        billed[key] = billed.get(key, 0) + call.prompt_tokens + call.completion_tokens
    return billed


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_a_burst_of_200_runs(stub: StubBackend, settings: Settings) -> None:
    stub.options.subtasks = 3
    with Service(settings, stub_backend(stub)) as service:
        asyncio.run(burst(service.url))  # warm-up: allocator, caches, connections
        stub.reset()
        gc.collect()
        before = rss_mb()
        run_ids, wall = asyncio.run(burst(service.url))
        gc.collect()
        after = rss_mb()
        with httpx.Client(base_url=service.url, timeout=30) as http:
            results = [http.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
            listed = http.get("/v1/runs", params={"limit": 100}).json()
    assert len(set(run_ids)) == RUNS
    assert [r["status"] for r in results] == ["completed"] * RUNS
    billed = billed_per_run_and_node(stub)
    assert sum(billed.values()) == sum(view["result"]["usage"]["total_tokens"] for view in results)
    for view in results:
        result = view["result"]
        usage = result["usage"]
        assert usage["total_tokens"] == sum(
            c["prompt_tokens"] + c["completion_tokens"] for c in result["calls"]
        )
        for node, row in result["by_node"].items():
            assert row["total_tokens"] == billed.get((result["question"], node), 0), (view["run_id"], node)
        succeeded = sorted(c["node"] for c in result["calls"] if c["error"] is None)
        assert succeeded == ["critic", "planner", "synthesizer", "worker", "worker", "worker"]
    assert listed["has_more"] is True
    latencies = [seconds(view["created_at"], view["updated_at"]) for view in results]
    assert after - before < 40, f"memory grew by {after - before:.1f} MB over a burst"
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    REPORT.append(
        f"load: {RUNS} runs at once (3 sub-questions each, zero-latency stub in the same process): "
        f"{RUNS / wall:.1f} runs/s, latency (submitted to stored) p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, "
        f"RSS {before:.0f} MB before and {after:.0f} MB after the burst"
    )
