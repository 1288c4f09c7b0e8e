"""Submit latency under load: `POST /v1/runs` (202, the run goes on in the background) timed at
the client while 8 other clients keep asking questions of 4 sub-questions through `/v1/reason`,
on SQLite and on Postgres + Redis; against the zero-latency stub (the service's CPU saturated)
and against one whose calls take 200 ms (runs in flight, as against a real backend).

    .venv/bin/python -m tests.bench.submit [--submits 200] [--clients 8] [--store sqlite postgres]
        [--latency 0 0.2]
"""

import argparse
import asyncio
import multiprocessing
import statistics
import time
from contextlib import ExitStack
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import httpx

from tests.bench.harness import QUESTION, pct, service, stub
from tests.support.services import REDIS_URL, redis_prefix, scratch_database


def busy(url: str, clients: int, stop: Event, answered: "Synchronized[int]") -> None:
    """``clients`` asking questions until ``stop`` (in a process of its own, so that the load
    does not slow the client that times the submits)."""

    async def load() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:

            async def client() -> None:
                while not stop.is_set():
                    body = {"question": QUESTION, "max_subtasks": 4}
                    response = await http.post("/v1/reason", json=body)
                    assert response.status_code == 200, response.text
                    answered.value += 1

            await asyncio.gather(*(client() for _ in range(clients)))

    asyncio.run(load())


def under_load(url: str, submits: int, clients: int) -> tuple[list[float], float]:
    """Seconds per submit, one at a time, while ``clients`` keep the service busy; and the
    questions they had answered per second meanwhile."""
    stop, answered = multiprocessing.Event(), multiprocessing.Value("i", 0)
    loader = multiprocessing.Process(target=busy, args=(url, clients, stop, answered))
    loader.start()
    try:
        time.sleep(1.0)  # the load is under way
        latencies, before, began = [], answered.value, time.perf_counter()
        with httpx.Client(base_url=url, timeout=300) as http:
            for _ in range(submits):
                t0 = time.perf_counter()
                response = http.post("/v1/runs", json={"question": QUESTION, "max_subtasks": 4})
                latencies.append(time.perf_counter() - t0)
                assert response.status_code == 202, response.text
                time.sleep(0.2)  # the submitted runs add load too: few of them
        rate = (answered.value - before) / (time.perf_counter() - began)
    finally:
        stop.set()
        loader.join(timeout=60)
    return latencies, rate


def measure(store: str, submits: int, clients: int, latency: float) -> dict[str, Any]:
    with ExitStack() as stack:
        env: dict[str, str] = {}
        if store == "postgres":
            env["DATABASE_URL"] = stack.enter_context(scratch_database())
            env["REDIS_URL"] = REDIS_URL
            env["REDIS_PREFIX"] = stack.enter_context(redis_prefix())
        backend = stack.enter_context(stub(latency))
        url, _ = stack.enter_context(service(backend, **env))
        latencies, rate = under_load(url, submits, clients)
    ms = [s * 1000 for s in latencies]
    return {"store": store, "submits": submits, "clients": clients, "latency_s": latency,
            "p50_ms": statistics.median(ms), "p90_ms": pct(ms, 0.9), "max_ms": max(ms),
            "load_runs_per_s": rate}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--store", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--latency", nargs="+", type=float, default=[0.0, 0.2], help="seconds per stub call")
    args = parser.parse_args()
    for latency in args.latency:
        for store in args.store:
            r = measure(store, args.submits, args.clients, latency)
            print(f"{store}, {latency:g} s per call: POST /v1/runs p50 {r['p50_ms']:.1f} ms, "
                  f"p90 {r['p90_ms']:.1f} ms, "
                  f"max {r['max_ms']:.1f} ms ({r['submits']} submits; {r['clients']} clients busy, "
                  f"{r['load_runs_per_s']:.1f} runs/s)")  # fmt: skip


if __name__ == "__main__":
    main()
