"""What orchestration costs, against the plain-asyncio floor: overhead per run (2), fan-out (3),
throughput over HTTP (4), streaming delay (5), growth with the plan's size (6) and where the
overhead goes (7)."""

import asyncio
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from openai import AsyncOpenAI

from graph import (
    Models,
    ModelSpec,
    build_graph,
    openai_chat_model,
)
from tests.bench.harness import (
    QUESTION,
    QUICK,
    calls,
    critical_path,
    drive,
    engine,
    engine_run,
    pct,
    proc_cpu_s,
    proc_peak_mb,
    reference_service,
    reset,
    service,
    stub,
)
from tests.bench.reference import reference_run
from tests.stub_backend import model_name
from tests.support.services import REDIS_URL, redis_prefix, scratch_database

# 2. orchestration overhead -------------------------------------------------------------------


def overhead(report: dict[str, Any]) -> None:
    sizes = [1, 4, 16] if QUICK else [1, 4, 16, 64]
    runs = 5 if QUICK else 15
    rows: dict[str, dict[int, list[float]]] = {"reference": {}, "engine": {}, "service": {}}
    with stub(0.05) as backend, service(backend) as (url, _):
        graph = engine(backend)
        client = AsyncOpenAI(base_url=f"{backend}/v1", api_key="unused", max_retries=0)
        http = httpx.Client(base_url=url, timeout=120)

        async def measure(mode: str, n: int, once: Callable[[], Awaitable[Any]]) -> None:
            samples = []
            for _ in range(runs + 1):
                reset(backend)
                t0 = time.perf_counter()
                await once()
                wall = time.perf_counter() - t0
                samples.append(wall - critical_path(calls(backend)))
            rows[mode][n] = samples[1:]  # the first run warms up connections

        async def service_once(n: int) -> None:
            response = await asyncio.to_thread(
                http.post, "/v1/reason", json={"question": QUESTION, "max_subtasks": n, "max_revisions": 1}
            )
            assert response.status_code == 200, response.text

        async def main() -> None:
            for n in sizes:
                await measure("reference", n, lambda n=n: reference_run(client, QUESTION, n))
                await measure("engine", n, lambda n=n: engine_run(graph, n))
                await measure("service", n, lambda n=n: service_once(n))
            await client.close()

        asyncio.run(main())
        http.close()
    table = []
    for n in sizes:
        ref = statistics.median(rows["reference"][n]) * 1000
        line = {"subtasks": n, "reference_ms": ref}
        for mode in ("engine", "service"):
            p50 = statistics.median(rows[mode][n]) * 1000
            line[f"{mode}_ms"] = p50
            line[f"{mode}_ratio"] = p50 / ref if ref > 0 else float("inf")
        table.append(line)
    report["overhead"] = table


# 3. fan-out efficiency -----------------------------------------------------------------------


def fanout(report: dict[str, Any]) -> None:
    out = {}
    latency = 0.5 if QUICK else 1.0
    with stub(latency) as backend:

        async def main() -> None:
            graph = engine(backend)
            for label, concurrency in (("parallel", 8), ("sequential", 1)):
                effs = []
                for _ in range(2):
                    reset(backend)
                    t0 = time.perf_counter()
                    await engine_run(graph, 8, concurrency)
                    wall = time.perf_counter() - t0
                    rows = calls(backend)
                    ideal = sum(
                        max((r["finished"] - r["started"] for r in rows if r["role"] == role), default=0.0)
                        for role in ("planner", "worker", "critic", "synthesizer")
                    )
                    effs.append((ideal / wall, wall))
                out[label] = {
                    "efficiency": statistics.mean(e for e, _ in effs),
                    "wall_s": statistics.mean(w for _, w in effs),
                }

        asyncio.run(main())
    report["fanout"] = {"subtasks": 8, "latency_s": latency, **out}


# 4. throughput over HTTP ---------------------------------------------------------------------


def throughput(report: dict[str, Any]) -> None:
    """Reference and service (on SQLite, and on Postgres + Redis) over HTTP, all up at once and
    driven in alternate blocks (A, B, C, A, B, C, ...) so that load drift lands on all alike;
    each row is the median of its blocks, with the load average at each block and the ratio to
    the reference paired block by block."""
    table = []
    levels = [1, 16] if QUICK else [1, 8, 16, 64]
    rounds = 2 if QUICK else 3
    with (
        stub(0.0) as backend,
        reference_service(backend) as ref,
        service(backend) as svc,
        scratch_database() as database,
        redis_prefix() as prefix,
        service(backend, DATABASE_URL=database, REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix) as pg,
    ):
        servers = {
            "reference": (*ref, "/reason"),
            "service": (*svc, "/v1/reason"),
            "postgres": (*pg, "/v1/reason"),
        }
        for url, _, path in servers.values():
            asyncio.run(drive(url, path, 4, 20))  # warm-up
        for clients in levels:
            runs = max(30, clients * (3 if QUICK else 6))
            blocks: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for _ in range(rounds):
                for name, (url, proc, path) in servers.items():
                    cpu0 = proc_cpu_s(proc.pid)
                    latencies, wall = asyncio.run(drive(url, path, clients, runs))
                    blocks[name].append({
                        "runs_per_s": runs / wall, "p50_ms": statistics.median(latencies) * 1000,
                        "p99_ms": pct(latencies, 0.99) * 1000,
                        "cpu_ms_per_run": (proc_cpu_s(proc.pid) - cpu0) / runs * 1000,
                        "load": os.getloadavg()[0],
                    })  # fmt: skip
            for name, (_, proc, _) in servers.items():
                row: dict[str, Any] = {"server": name, "clients": clients, "runs": runs, "blocks": rounds}
                for key in ("runs_per_s", "p50_ms", "p99_ms", "cpu_ms_per_run"):
                    row[key] = statistics.median(b[key] for b in blocks[name])
                row["load"] = [round(b["load"], 2) for b in blocks[name]]
                row["peak_mb"] = proc_peak_mb(proc.pid)
                if name != "reference":
                    pairs = zip(blocks[name], blocks["reference"], strict=True)
                    row["paired_ratio"] = statistics.median(
                        s["runs_per_s"] / r["runs_per_s"] for s, r in pairs
                    )
                table.append(row)
    report["throughput"] = table


# 5. streaming delay --------------------------------------------------------------------------


def streaming(report: dict[str, Any]) -> None:
    delays: list[float] = []
    with (
        stub(0.1) as backend,
        service(backend, LLM_STREAM="true") as (url, _),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for _ in range(5 if QUICK else 20):
            reset(backend)
            received: dict[str, float] = {}
            body = {"question": QUESTION, "max_subtasks": 4, "max_revisions": 0}
            with http.stream("POST", "/v1/reason", json=body, headers={"Accept": "text/event-stream"}) as r:
                event = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event in ("plan", "task.completed"):
                        data = json.loads(line[6:])
                        key = "plan" if event == "plan" else data["task_id"]
                        received[key] = time.perf_counter()
            for row in calls(backend):
                if row["role"] == "planner" and "plan" in received:
                    delays.append(received["plan"] - row["finished"])
                elif row["role"] == "worker":
                    part = row["last"].split("Part ", 1)[1].split(" ", 1)[0] if "Part " in row["last"] else ""
                    if f"t{part}" in received:
                        delays.append(received[f"t{part}"] - row["finished"])
    report["streaming"] = {
        "samples": len(delays),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": pct(delays, 0.99) * 1000,
    }


# 6. growth -----------------------------------------------------------------------------------


def growth(report: dict[str, Any]) -> None:
    sizes = [1, 2, 4, 8, 16, 32, 64]
    table = []
    with stub(0.0) as backend:

        async def main() -> None:
            graph = engine(backend)
            await engine_run(graph, 4)
            for n in sizes:
                runs = 3 if QUICK else 8
                c0 = time.process_time()
                for _ in range(runs):
                    await engine_run(graph, n)
                cpu_ms = (time.process_time() - c0) / runs * 1000
                tracemalloc.start()
                await engine_run(graph, n)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                table.append({"subtasks": n, "cpu_ms_per_run": cpu_ms, "peak_kb_per_run": peak / 1024})

        asyncio.run(main())
    report["growth"] = table


# 7. where the overhead goes -----------------------------------------------------------------


class ScriptedChat(BaseChatModel):
    """An in-memory chat model: the engine's own cost, with no HTTP and no SDK."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        system = str(messages[0].content)
        if "planner" in system:
            text = json.dumps({"subquestions": [f"Part {i}?" for i in range(1, 5)]})
        elif "strict reviewer" in system:
            text = json.dumps({"verdicts": []})
        else:
            text = "An answer with some words."
        usage = {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text, usage_metadata=usage))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._generate(messages)


def attribution(report: dict[str, Any]) -> None:
    """Per-call cost of the SDK alone and through ChatOpenAI, and the engine's own per-run cost."""
    messages = [
        {"role": "system", "content": "You are a careful expert."},
        {"role": "user", "content": QUESTION},
    ]
    calls_n = 100 if QUICK else 300
    with stub(0.0) as backend:

        async def main() -> dict[str, float]:
            raw = AsyncOpenAI(base_url=f"{backend}/v1", api_key="unused", max_retries=0)
            chat = openai_chat_model(
                model=model_name("worker"), base_url=f"{backend}/v1", api_key="unused", timeout_s=60
            )
            lc = [SystemMessage(messages[0]["content"]), HumanMessage(messages[1]["content"])]

            async def sdk() -> None:
                await raw.chat.completions.create(
                    model=model_name("worker"),
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=64,
                )

            async def langchain() -> None:
                await chat.ainvoke(lc, extra_body={"max_tokens": 64})

            out = {}
            for name, call in (
                ("sdk", sdk),
                ("chatopenai", langchain),
                ("sdk", sdk),
                ("chatopenai", langchain),
            ):
                t0 = time.perf_counter()
                for _ in range(calls_n):
                    await call()
                out[f"{name}_ms_per_call"] = (time.perf_counter() - t0) / calls_n * 1000
            await raw.close()
            graph = build_graph(Models.same(ModelSpec(chat=ScriptedChat(), name="scripted", stream=False)))
            for _ in range(10):
                await engine_run(graph, 4)
            t0 = time.perf_counter()
            for _ in range(100):
                await engine_run(graph, 4)
            out["engine_ms_per_run_no_http"] = (time.perf_counter() - t0) / 100 * 1000
            return out

        report["attribution"] = asyncio.run(main())
