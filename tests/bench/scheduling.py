"""Plans with dependencies: a chain beside independent sub-questions (8), streamed planning (9),
and dependency answers reaching their dependents (10)."""

import asyncio
import json
import re
import statistics
import time
from typing import Any

import httpx

from tests.bench.harness import (
    QUESTION,
    QUICK,
    calls,
    engine,
    engine_run,
    reset,
    service,
    stub,
)
from tests.stub_backend import subquestion_of

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
