"""`make bench`: the engine and the service measured side by side with a plain-asyncio
reference, against the scripted backend in its own process.

Every figure is a ratio or a distribution from the same run, since absolute times on a shared
machine drift. Prints a table, writes results.json and PNG plots to tests/bench/results/.
"""

import asyncio
import dataclasses
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.types import Durability
from openai import AsyncOpenAI

from api.backend.embedded import free_port
from api.runs.worker import StoredCalls
from api.storage.interface import Event
from api.storage.sqlite import SQLiteRunStore
from graph import (
    Models,
    ModelSpec,
    Result,
    RunContext,
    TiktokenCounter,
    build_graph,
    execute,
    openai_chat_model,
)
from graph.events import RUN_COMPLETED, RunEnded
from graph.journal import Journal
from tests.bench.harness import (
    QUESTION,
    drive,
    pct,
    proc_cpu_s,
    proc_peak_mb,
    process,
    service,
    stub,
)
from tests.bench.langgraph_server import langgraph_server, print_langgraph_server
from tests.bench.observability import observability, print_observability
from tests.bench.reference import reference_run
from tests.bench.replicas import plot_replicas, print_replicas, replicas
from tests.bench.tools import print_tool_call_cost, print_tool_chain, tool_call_cost, tool_chain
from tests.stub_backend import StubBackend, StubOptions, model_name, subquestion_of
from tests.support.services import REDIS_URL, redis_prefix, scratch_database
from tests.support.sse import frames

RESULTS = Path(__file__).resolve().parent / "results"
QUICK = os.environ.get("BENCH_QUICK") == "1"


@contextmanager
def reference_service(backend: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    args = ["-m", "tests.bench.reference", "--backend", f"{backend}/v1", "--port", str(port)]
    with process(args, f"http://127.0.0.1:{port}/") as p:
        yield f"http://127.0.0.1:{port}", p


def calls(backend: str, full: bool = False) -> list[dict[str, Any]]:
    """The stub's record of calls; ``full`` gives whole prompts (else their first 400 characters)."""
    rows: list[dict[str, Any]] = httpx.get(f"{backend}/_calls", params={"full": "1"} if full else None).json()
    return rows


def reset(backend: str) -> None:
    httpx.post(f"{backend}/_reset")


def critical_path(rows: list[dict[str, Any]]) -> float:
    """Backend time on the critical path: each stage's longest call, summed over the stages."""
    total = 0.0
    for role in ("planner", "worker", "critic", "synthesizer"):
        spans = [r["finished"] - r["started"] for r in rows if r["role"] == role]
        if role == "worker":
            total += max(spans, default=0.0)
        else:
            total += sum(spans)
    return total


def engine(backend: str, stream: bool = False, checkpointer: Any = None) -> Any:
    def spec(role: str) -> ModelSpec:
        name = model_name(role)
        chat = openai_chat_model(model=name, base_url=f"{backend}/v1", api_key="unused", timeout_s=60)
        # Not streamed, like the reference: streaming is measured on its own (5, 9).
        return ModelSpec(chat=chat, name=name, stream=stream)

    return build_graph(
        Models(
            planner=spec("planner"),
            worker=spec("worker"),
            critic=spec("critic"),
            synthesizer=spec("synthesizer"),
        ),
        checkpointer=checkpointer,
    )


async def engine_run(
    graph: Any, subtasks: int, concurrency: int = 64, max_revisions: int = 1
) -> dict[str, Any]:
    async def ignore(name: str, data: dict[str, Any]) -> None:
        return None

    ctx = RunContext(
        max_subtasks=subtasks,
        max_revisions=max_revisions,
        max_output_tokens=512,
        max_concurrency=concurrency,
    )
    count = await TiktokenCounter().count(QUESTION)
    result: dict[str, Any] = dict(
        await execute(
            graph,
            QUESTION,
            ctx,
            run_id="bench",
            question_count=count,
            emit=ignore,
        )
    )
    assert result["status"] == "completed", result["error"]
    return result


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


# plans with dependencies (8-10) ---------------------------------------------------------------

CHAIN_PLAN: list[dict[str, Any]] = [
    {"id": "t1", "question": "What is the average January temperature in Oslo?", "depends_on": []},
    {"id": "t2", "question": "How much warmer than that is Madrid in January?", "depends_on": ["t1"]},
    {"id": "t3", "question": "Which geographic factors explain that temperature gap?", "depends_on": ["t2"]},
    {"id": "t4", "question": "How much rain falls in Bergen each year?", "depends_on": []},
    {"id": "t5", "question": "How many hours of sunshine does Seville get each year?", "depends_on": []},
    {"id": "t6", "question": "How does the Gulf Stream affect the Norwegian coast?", "depends_on": []},
]
"""A 3-step chain t1 → t2 → t3 beside 3 independent sub-questions."""
CHAIN = ["t1", "t2", "t3"]
SLOW_TASK, SLOW_KEY = "t4", "Bergen"
"""The independent sibling timed against the chain: in the slow variant its worker call (its
sub-question names Bergen) takes 5 s."""

STREAMED_PLAN: list[dict[str, Any]] = [
    {"id": "t1", "question": "What shapes the climate of Norway in winter?", "depends_on": []},
    {"id": "t2", "question": "What shapes the climate of Spain in summer?", "depends_on": []},
    {"id": "t3", "question": "How do ocean currents differ around the two countries?", "depends_on": []},
    {"id": "t4", "question": "How does latitude change the length of their days?", "depends_on": []},
]
"""Four independent tasks: each can start the moment the planner has written it."""


def plan_options(plan: list[dict[str, Any]], *options: str) -> list[str]:
    """Stub flags: this plan for every planner call, and more flags."""
    return ["--plan-json", json.dumps(plan), *options]


def worker_rows(rows: list[dict[str, Any]], plan: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's worker call, found by the sub-question it asks (needs ``calls(full=True)``)."""
    by_question = {subquestion_of(r["last"]): r for r in rows if r["role"] == "worker"}
    return {t["id"]: by_question[t["question"]] for t in plan}


def span(row: dict[str, Any]) -> float:
    return float(row["finished"] - row["started"])


def dag_critical_path(rows: list[dict[str, Any]], plan: list[dict[str, Any]]) -> float:
    """Backend time on the critical path of a plan with edges: the planner, critic and
    synthesizer calls, and the longest chain of worker calls through the plan's dependencies."""
    workers = worker_rows(rows, plan)
    done: dict[str, float] = {}
    for task in plan:
        done[task["id"]] = span(workers[task["id"]]) + max((done[d] for d in task["depends_on"]), default=0.0)
    return sum(span(r) for r in rows if r["role"] in ("planner", "critic", "synthesizer")) + max(
        done.values()
    )


# 8. a chain beside independent sub-questions -------------------------------------------------


def chain(report: dict[str, Any]) -> None:
    """Wall time of a plan with a 3-step chain against its critical path, and with one
    independent sub-question slowed to 5 s: the chain must not wait for it."""
    latency, slow_s = 1.0, 5.0
    runs = 1 if QUICK else 2
    nominal = latency * (1 + len(CHAIN) + 2)  # planner, the chain, critic, synthesizer
    out: dict[str, Any] = {}
    for label, options in (("even", []), ("slow_sibling", ["--slow", f"{SLOW_KEY}={slow_s}"])):
        slow = slow_s if options else latency
        bound = max(nominal, latency + slow + 2 * latency)
        with stub(latency, *plan_options(CHAIN_PLAN, *options)) as backend:

            async def main(backend: str = backend) -> list[dict[str, float]]:
                graph = engine(backend)
                samples = []
                for _ in range(runs):
                    reset(backend)
                    t0 = time.perf_counter()
                    await engine_run(graph, len(CHAIN_PLAN), max_revisions=1)
                    wall = time.perf_counter() - t0
                    rows = calls(backend, full=True)
                    assert [r["role"] for r in rows].count("critic") == 1, "the critic runs once"
                    workers = worker_rows(rows, CHAIN_PLAN)
                    start = min(r["started"] for r in rows if r["role"] == "planner")
                    samples.append({
                        "wall_s": wall,
                        "backend_path_s": dag_critical_path(rows, CHAIN_PLAN),
                        "chain_end_s": workers[CHAIN[-1]]["finished"] - start,
                        "sibling_end_s": workers[SLOW_TASK]["finished"] - start,
                    })  # fmt: skip
                return samples

            samples = asyncio.run(main())
        row = {key: statistics.mean(s[key] for s in samples) for key in samples[0]}
        out[label] = {"slow_s": slow, "bound_s": bound, **row, "wall_ratio": row["wall_s"] / bound}
    out["chain_delay_s"] = out["slow_sibling"]["chain_end_s"] - out["even"]["chain_end_s"]
    report["chain"] = {
        "latency_s": latency,
        "plan": CHAIN_PLAN,
        "runs": runs,
        "critical_path_s": nominal,
        **out,
    }


# 9. streamed planning ------------------------------------------------------------------------


def close_times(plan: list[dict[str, Any]], chunks: list[list[Any]]) -> dict[str, float]:
    """When the stub sent each task's closing brace, from the planner call's streamed chunks
    (the stub writes the plan as ``json.dumps({"subquestions": plan})``)."""
    text = json.dumps({"subquestions": plan})
    assert "".join(piece for _, piece in chunks) == text, "the planner streamed the scripted plan"
    ends, cursor = {}, 0
    for task in plan:
        piece = json.dumps(task)
        cursor = text.index(piece, cursor) + len(piece)
        ends[task["id"]] = cursor  # the text up to and including the task's "}"
    out, sent = {}, 0
    for when, piece in chunks:
        sent += len(piece)
        for task_id, end in ends.items():
            if task_id not in out and sent >= end:
                out[task_id] = when
    return out


def dispatch_figures(samples: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """From runs of a streamed plan: how early the first worker call started (against the time
    the rest of the plan took to stream) and each task's last plan token → its worker call."""
    delays, leads = [], []
    for rows in samples:
        planner = next(r for r in rows if r["role"] == "planner")
        closed = close_times(STREAMED_PLAN, planner["chunks"])
        workers = worker_rows(rows, STREAMED_PLAN)
        delays += [workers[t]["started"] - closed[t] for t in closed]
        first = min(workers.values(), key=lambda r: r["started"])
        first_task = next(t for t, r in workers.items() if r is first)
        rest = planner["chunks"][-1][0] - closed[first_task]
        lead = planner["finished"] - first["started"]
        leads.append({"lead_s": lead, "rest_s": rest, "share": lead / rest})
    return {
        "runs": len(samples),
        "lead_s": statistics.median(x["lead_s"] for x in leads),
        "rest_s": statistics.median(x["rest_s"] for x in leads),
        "lead_share_p50": statistics.median(x["share"] for x in leads),
        "lead_share_min": min(x["share"] for x in leads),
        "delays": len(delays),
        "delay_p50_ms": statistics.median(delays) * 1000,
        "delay_max_ms": max(delays) * 1000,
    }


def streamed_plan(report: dict[str, Any]) -> None:
    """A 4-task plan streamed at a fixed rate, engine in-process (streaming model specs) and the
    service with LLM_STREAM=true: each task goes to a worker the moment its "}" is written."""
    rate = 40.0
    runs = 2 if QUICK else 5
    out: dict[str, Any] = {}
    options = plan_options(STREAMED_PLAN, "--role-tokens-per-s", f"planner={rate:g}")
    with stub(0.0, *options) as backend:

        async def engine_runs() -> list[list[dict[str, Any]]]:
            graph = engine(backend, stream=True)
            samples = []
            for _ in range(runs + 1):
                reset(backend)
                await engine_run(graph, len(STREAMED_PLAN), max_revisions=0)
                samples.append(calls(backend, full=True))
            return samples[1:]  # the first run warms up connections

        out["engine"] = dispatch_figures(asyncio.run(engine_runs()))
        with (
            service(backend, LLM_STREAM="true") as (url, _),
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            samples = []
            body = {"question": QUESTION, "max_subtasks": len(STREAMED_PLAN), "max_revisions": 0}
            for _ in range(runs + 1):
                reset(backend)
                response = http.post("/v1/reason", json=body)
                assert response.status_code == 200, response.text
                samples.append(calls(backend, full=True))
            out["service"] = dispatch_figures(samples[1:])
    planner_tokens = len(json.dumps({"subquestions": STREAMED_PLAN}).split())
    report["streamed_plan"] = {
        "tasks": len(STREAMED_PLAN),
        "planner_tokens_per_s": rate,
        "planner_stream_s": planner_tokens / rate,
        **out,
    }


# 10. dependency answers reach their dependents ----------------------------------------------


def answers_given(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whose answers each worker's prompt holds (workers answer "Answer to: <sub-question>")."""
    workers = worker_rows(rows, CHAIN_PLAN)
    question = {t["id"]: t["question"] for t in CHAIN_PLAN}
    given = {t: set(re.findall(r"Answer to: (.+)", r["last"])) for t, r in workers.items()}
    expected = {t["id"]: {question[d] for d in t["depends_on"]} for t in CHAIN_PLAN}
    dependents = [t for t in expected if expected[t]]
    independents = [t for t in expected if not expected[t]]
    return {
        "dependents": len(dependents),
        "dependents_with_their_answers": sum(given[t] == expected[t] for t in dependents),
        "independents": len(independents),
        "independents_without_answers": sum(not given[t] for t in independents),
    }


def dependency_answers(report: dict[str, Any]) -> None:
    """The chain plan with echoing workers, engine and service: a dependent's prompt holds
    exactly its dependencies' answers, an independent's none."""
    out = {}
    with stub(0.0, *plan_options(CHAIN_PLAN, "--echo-subquestion")) as backend:

        async def engine_once() -> None:
            reset(backend)
            await engine_run(engine(backend), len(CHAIN_PLAN), max_revisions=0)

        asyncio.run(engine_once())
        out["engine"] = answers_given(calls(backend, full=True))
        with service(backend) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
            reset(backend)
            body = {"question": QUESTION, "max_subtasks": len(CHAIN_PLAN), "max_revisions": 0}
            response = http.post("/v1/reason", json=body)
            assert response.status_code == 200, response.text
            out["service"] = answers_given(calls(backend, full=True))
    report["dependency_answers"] = out


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


# output --------------------------------------------------------------------------------------


def plots(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ov = report["overhead"]
    xs = [r["subtasks"] for r in ov]
    ax = axes[0][0]
    for key, label in (("reference_ms", "reference (asyncio + openai)"), ("engine_ms", "engine in-process"),
                       ("service_ms", "HTTP service")):  # fmt: skip
        ax.plot(xs, [r[key] for r in ov], marker="o", label=label)
    ax.set(
        xscale="log",
        xlabel="sub-questions",
        ylabel="p50 overhead per run (ms)",
        title="Orchestration overhead",
    )
    ax.legend()
    ax = axes[0][1]
    labels = {
        "reference": "reference",
        "service": "service (SQLite)",
        "postgres": "service (Postgres + Redis)",
    }
    for server, label in labels.items():
        rows = [r for r in report["throughput"] if r["server"] == server]
        ax.plot([r["clients"] for r in rows], [r["runs_per_s"] for r in rows], marker="o", label=label)
    ax.set(
        xscale="log", xlabel="concurrent clients", ylabel="runs/s", title="Throughput, zero-latency backend"
    )
    ax.legend()
    gr = report["growth"]
    ax = axes[1][0]
    ax.plot([r["subtasks"] for r in gr], [r["cpu_ms_per_run"] for r in gr], marker="o")
    ax.set(xlabel="sub-questions", ylabel="CPU ms per run", title="Growth: CPU (engine, in-process)")
    ax = axes[1][1]
    ax.plot([r["subtasks"] for r in gr], [r["peak_kb_per_run"] / 1024 for r in gr], marker="o", color="C2")
    ax.set(
        xlabel="sub-questions", ylabel="peak traced MB per run", title="Growth: memory (engine, in-process)"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "bench.png", dpi=110)
    plot_replicas(report)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}")
    print("\n2. orchestration overhead = wall - backend critical path, p50 ms (ratio to reference)")
    print(f"{'sub-q':>6}{'reference':>11}{'engine':>18}{'service':>18}")
    for r in report["overhead"]:
        print(f"{r['subtasks']:>6}{r['reference_ms']:>11.1f}{r['engine_ms']:>11.1f} ({r['engine_ratio']:.2f})"
              f"{r['service_ms']:>11.1f} ({r['service_ratio']:.2f})")  # fmt: skip
    f = report["fanout"]
    print(f"\n3. fan-out efficiency, 8 sub-questions at {f['latency_s']} s per call: "
          f"parallel {f['parallel']['efficiency']:.2f} ({f['parallel']['wall_s']:.2f} s), "
          f"sequential {f['sequential']['efficiency']:.2f} ({f['sequential']['wall_s']:.2f} s)")  # fmt: skip
    print("\n4. throughput over HTTP, zero-latency backend, 4 sub-questions")
    print(
        "   (blocks alternate reference, service on SQLite, on Postgres + Redis, ...; medians of the blocks;"
    )
    print("   load average per block)")
    print(
        f"{'server':>10}{'clients':>8}{'runs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/run':>12}{'peak MB':>9}"
        "  load"
    )
    for r in report["throughput"]:
        print(f"{r['server']:>10}{r['clients']:>8}{r['runs_per_s']:>9.1f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
              f"{r['cpu_ms_per_run']:>12.1f}{r['peak_mb']:>9.0f}  "
              f"{' '.join(map(str, r['load']))}")  # fmt: skip
    for server in ("service", "postgres"):
        ratios = {r["clients"]: r["paired_ratio"] for r in report["throughput"] if r["server"] == server}
        print(
            f"   {server} / reference runs/s, paired by block: "
            + ", ".join(f"{c} clients {v:.2f}" for c, v in ratios.items())
        )
        report[f"throughput_ratio_{server}"] = ratios
    s = report["streaming"]
    print(f"\n5. streaming delay, backend step done -> client has the event: p50 {s['p50_ms']:.1f} ms, "
          f"p99 {s['p99_ms']:.1f} ms ({s['samples']} events)")  # fmt: skip
    a = report["attribution"]
    print(
        f"\n7. where the overhead goes: one call through the openai SDK {a['sdk_ms_per_call']:.2f} ms, "
        f"through ChatOpenAI {a['chatopenai_ms_per_call']:.2f} ms (zero-latency stub); one engine run "
        f"with an in-memory model (4 sub-questions, 7 calls, no HTTP) {a['engine_ms_per_run_no_http']:.2f} ms"
    )
    c = report["chain"]
    even, slow = c["even"], c["slow_sibling"]
    print(f"\n8. chain t1 -> t2 -> t3 beside 3 independent sub-questions, {c['latency_s']:g} s per call, "
          f"critic once (mean of {c['runs']} runs)")  # fmt: skip
    print(f"   even: wall {even['wall_s']:.2f} s vs critical path {c['critical_path_s']:.1f} s "
          f"(backend's own {even['backend_path_s']:.2f} s): {even['wall_ratio']:.3f} x")  # fmt: skip
    print(f"   one independent at {slow['slow_s']:g} s: wall {slow['wall_s']:.2f} s vs "
          f"max(critical path, planner + {slow['slow_s']:g} s + critic + synthesizer) "
          f"{slow['bound_s']:.1f} s: "
          f"{slow['wall_ratio']:.3f} x; t3 done at {slow['chain_end_s']:.2f} s, the slow call at "
          f"{slow['sibling_end_s']:.2f} s (after the planner's start); the chain ends "
          f"{c['chain_delay_s'] * 1000:+.0f} ms vs the even run")  # fmt: skip
    p = report["streamed_plan"]
    print(f"\n9. streamed planning, {p['tasks']} independent tasks, planner at {p['planner_tokens_per_s']:g} "
          f"tokens/s ({p['planner_stream_s']:.2f} s of plan)")  # fmt: skip
    for mode in ("engine", "service"):
        m = p[mode]
        print(f"   {mode:>7}: first worker call {m['lead_s']:.2f} s before the planner's call ended, "
              f"the rest of the plan streamed in {m['rest_s']:.2f} s: {m['lead_share_p50']:.2f} "
              f"(min {m['lead_share_min']:.2f}); last plan token -> worker call p50 "
              f"{m['delay_p50_ms']:.1f} ms, max {m['delay_max_ms']:.1f} ms "
              f"({m['delays']} tasks)")  # fmt: skip
    print("\n10. dependency answers in worker prompts (chain plan, echoing workers)")
    for mode, d in report["dependency_answers"].items():
        print(f"   {mode:>7}: dependents with exactly their dependencies' answers "
              f"{d['dependents_with_their_answers']}/{d['dependents']}, independents with no other answer "
              f"{d['independents_without_answers']}/{d['independents']}")  # fmt: skip
    print_durability(report)
    print_restart(report)
    print_replicas(report)
    print_observability(report)
    print_langgraph_server(report)
    print_tool_chain(report)
    print_tool_call_cost(report)
    print("\n6. growth per run (engine in-process)")
    print(f"{'sub-q':>6}{'CPU ms':>9}{'CPU ms/sub-q':>14}{'peak KB':>10}{'KB/sub-q':>10}")
    for r in report["growth"]:
        n = r["subtasks"]
        print(f"{n:>6}{r['cpu_ms_per_run']:>9.1f}{r['cpu_ms_per_run'] / n:>14.2f}"
              f"{r['peak_kb_per_run']:>10.0f}{r['peak_kb_per_run'] / n:>10.1f}")  # fmt: skip


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


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"}
    started = time.perf_counter()
    steps = (overhead, fanout, throughput, streaming, growth, attribution, chain, streamed_plan,
             dependency_answers, durability, restart, observability, replicas, langgraph_server,
             tool_chain, tool_call_cost)  # fmt: skip
    for step in steps:
        t0 = time.perf_counter()
        step(report)
        print(f"[{step.__name__} done in {time.perf_counter() - t0:.0f} s]", flush=True)
    report["duration_s"] = time.perf_counter() - started
    print_table(report)
    plots(report)
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {RESULTS / 'results.json'}, {RESULTS / 'bench.png'}, {RESULTS / 'replicas.png'} "
          f"({report['duration_s']:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
