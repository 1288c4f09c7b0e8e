"""Plans whose steps build on each other: start order, no barrier, failures, revisions, cancel,
the ledger of a chain, and a plan dispatched while it is still streaming."""

import asyncio
from typing import Any

from graph import RunContext, TiktokenCounter, build_graph, execute
from graph.result import Result
from tests.conftest import stub_models
from tests.stub_backend import Fault, Recorded, StubBackend
from tests.unit.graph.test_graph import Events, run_with_events

CHAIN = [
    {"id": "t1", "question": "Which country won the 2018 World Cup?", "depends_on": []},
    {"id": "t2", "question": "Who was president of that country then?", "depends_on": ["t1"]},
    {"id": "t3", "question": "How old was that president at the time?", "depends_on": ["t2"]},
    {"id": "t4", "question": "Where was the 2018 final played?", "depends_on": []},
]


def worker_call(stub: StubBackend, question: str) -> Recorded:
    return next(c for c in stub.calls_of("worker") if question in str(c.body["messages"][-1]["content"]))


def started(events: Events) -> list[str]:
    return [d["task_id"] for name, d in events if name == "task.started"]


async def test_the_plan_keeps_its_edges_and_dependents_get_the_answers(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.options.echo_subquestion = True
    result, events = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    assert [t["depends_on"] for t in result["plan"]] == [[], ["t1"], ["t2"], []]
    assert result["status"] == "completed"
    t2_prompt = str(worker_call(stub, CHAIN[1]["question"]).body["messages"][-1]["content"])
    assert f"Answer to: {CHAIN[0]['question']}" in t2_prompt, "a dependent gets its dependency's answer"
    t4_prompt = str(worker_call(stub, CHAIN[3]["question"]).body["messages"][-1]["content"])
    assert "Answer to:" not in t4_prompt, "an independent task gets no other answer"
    inputs = {d["task_id"]: d["inputs"] for name, d in events if name == "task.started"}
    assert inputs == {"t1": [], "t2": ["t1"], "t3": ["t2"], "t4": []}
    critic_prompt = (
        str(stub.calls_of("critic")[0].body["messages"][-1]["content"]) if stub.calls_of("critic") else ""
    )
    synth_prompt = str(stub.calls_of("synthesizer")[0].body["messages"][-1]["content"])
    assert 'task_id="t3" depends_on="t2"' in synth_prompt
    assert critic_prompt == "", "no critic without revisions"


async def test_a_slow_sibling_does_not_hold_back_the_chain(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.options.latency_s = 0.2
    stub.options.slow = {"Where was the 2018 final": 1.5}
    await run_with_events(stub, max_subtasks=4, max_revisions=0)
    chain_end = worker_call(stub, CHAIN[2]["question"]).finished
    slow_end = worker_call(stub, CHAIN[3]["question"]).finished
    assert chain_end < slow_end, "t1 → t2 → t3 finished while t4 still ran"
    t2_start = worker_call(stub, CHAIN[1]["question"]).started
    t1_end = worker_call(stub, CHAIN[0]["question"]).finished
    assert t2_start - t1_end < 0.5, "t2 started when t1 had its answer, not when the slow sibling ended"


async def test_a_failed_dependency_fails_its_chain_without_calling_it(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.inject("worker", *[Fault(status=500, match=str(CHAIN[0]["question"]))] * 2)
    result, events = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    answers = {a["task_id"]: a for a in result["subanswers"]}
    assert answers["t2"]["error"] == "dependency t1 failed"
    assert answers["t3"]["error"] == "dependency t1 failed"
    assert answers["t4"]["status"] == "ok"
    assert sorted(started(events)) == ["t1", "t4"], "t2 and t3 were never called"
    assert result["status"] == "partial"


async def test_a_revision_re_runs_its_dependents_with_the_new_answer(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.options.critic_reply = (
        '{"verdicts": [{"task_id": "t1", "verdict": "revise", "feedback": "check the year"},'
        ' {"task_id": "t2", "verdict": "accept", "feedback": ""},'
        ' {"task_id": "t3", "verdict": "accept", "feedback": ""},'
        ' {"task_id": "t4", "verdict": "accept", "feedback": ""}]}'
    )
    result, events = await run_with_events(stub, max_subtasks=4, max_revisions=1)
    assert sorted(started(events)) == ["t1", "t1", "t2", "t2", "t3", "t3", "t4"]
    attempts = {a["task_id"]: a["attempts"] for a in result["subanswers"]}
    assert attempts == {"t1": 2, "t2": 2, "t3": 2, "t4": 1}
    revised_t2 = [c for c in stub.calls_of("worker") if CHAIN[1]["question"] in str(c.body["messages"][-1])][
        -1
    ]
    assert "<reviewer_feedback>" not in str(revised_t2.body["messages"][-1]["content"]), (
        "no feedback of its own"
    )
    assert len(stub.calls_of("critic")) == 1
    critic_prompt = str(stub.calls_of("critic")[0].body["messages"][-1]["content"])
    assert 'task_id="t2" depends_on="t1"' in critic_prompt, "the critic sees the structure"


async def test_the_ledger_of_a_chain_is_what_the_backend_billed_per_task(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    result, _ = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert result["usage"]["total_tokens"] == billed
    for task in CHAIN:
        rows = [r for r in result["calls"] if r["task_id"] == task["id"]]
        call = worker_call(stub, str(task["question"]))
        assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
            (call.prompt_tokens, call.completion_tokens)
        ]


async def test_cancel_mid_chain_stops_the_chain(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.options.latency_s = 0.3
    events: list[str] = []
    second_started = asyncio.Event()

    async def emit(name: str, data: dict[str, Any]) -> None:
        events.append(name)
        if name == "task.started" and data["task_id"] == "t2":
            second_started.set()

    run = asyncio.create_task(
        execute(
            build_graph(stub_models(stub)),
            "Q?",
            RunContext(max_subtasks=4, max_revisions=0),
            run_id="run_cancel",
            question_count=await TiktokenCounter().count("Q?"),
            emit=emit,
        )
    )
    await second_started.wait()
    run.cancel()
    result: Result = await run
    assert result["status"] == "cancelled"
    assert not worker_call_exists(stub, str(CHAIN[2]["question"])), "t3 was never called"
    assert [r["error"] for r in result["calls"] if r["task_id"] == "t2"] == ["cancelled"]
    assert not stub.calls_of("synthesizer")


def worker_call_exists(stub: StubBackend, question: str) -> bool:
    return any(question in str(c.body["messages"][-1]["content"]) for c in stub.calls_of("worker"))


async def test_the_first_worker_starts_while_the_plan_is_still_streaming(stub: StubBackend) -> None:
    stub.options.plan = CHAIN
    stub.options.role_tokens_per_s = {"planner": 60}
    result, events = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    planner = stub.calls_of("planner")[0]
    first_worker = min(c.started for c in stub.calls_of("worker"))
    assert first_worker < planner.finished - 0.2, "t1 went out long before the planner's call ended"
    names = [n for n, _ in events]
    assert names.index("task.started") < names.index("plan")
    assert [d["task"]["id"] for n, d in events if n == "plan.task"] == ["t1", "t2", "t3", "t4"]
    assert not result["fallbacks"]


async def test_junk_tasks_and_bad_edges_are_repaired_and_said(stub: StubBackend) -> None:
    stub.options.plan = [
        {"id": "t1", "question": "json_object", "depends_on": []},
        {"id": "t2", "question": "What is the boiling point of water?", "depends_on": ["t1", "t2"]},
        {"id": "t3", "question": "<question>", "depends_on": []},
    ]
    result, _ = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    assert result["plan"] == [
        {"id": "t1", "question": "What is the boiling point of water?", "depends_on": []}
    ]
    kinds = [f["kind"] for f in result["fallbacks"]]
    assert kinds == ["junk_subquestion", "dropped_dependency", "dropped_dependency", "junk_subquestion"]


async def test_a_plan_that_breaks_off_keeps_the_tasks_already_read(stub: StubBackend) -> None:
    stub.options.planner_reply = (
        '{"subquestions": [{"id": "t1", "question": "What is two plus two?", "depends_on": []}, '
        '{"id": "t2", "quest'
    )
    result, events = await run_with_events(stub, max_subtasks=4, max_revisions=0)
    assert [t["question"] for t in result["plan"]] == ["What is two plus two?"]
    assert [f["kind"] for f in result["fallbacks"]] == ["incomplete_plan"]
    assert len(stub.calls_of("planner")) == 1, "no repair call: its tasks are already under way"
    assert started(events) == ["t1"]


async def test_a_dependent_whose_re_run_fails_keeps_its_earlier_answer(stub: StubBackend) -> None:
    stub.options.plan = CHAIN[:2]
    stub.options.echo_subquestion = True
    stub.options.critic_reply = (
        '{"verdicts": [{"task_id": "t1", "verdict": "revise", "feedback": "check the year"},'
        ' {"task_id": "t2", "verdict": "accept", "feedback": ""}]}'
    )

    async def emit(name: str, data: dict[str, Any]) -> None:
        if name == "critique":  # the re-run of t2, after t1's revision, fails both tries
            stub.inject("worker", *[Fault(status=500, match=str(CHAIN[1]["question"]))] * 2)

    result = await execute(
        build_graph(stub_models(stub)),
        "Q?",
        RunContext(max_subtasks=4, max_revisions=1, max_attempts=2, retry_initial_s=0.01),
        run_id="run_rerun",
        question_count=await TiktokenCounter().count("Q?"),
        emit=emit,
    )
    t2 = next(a for a in result["subanswers"] if a["task_id"] == "t2")
    assert t2["status"] == "ok" and t2["answer"] == f"Answer to: {CHAIN[1]['question']}"
    assert t2["error"] is not None and t2["attempts"] == 2
    assert [f["detail"].split(":")[0] for f in result["fallbacks"] if f["kind"] == "revision_failed"] == [
        "t2"
    ]
