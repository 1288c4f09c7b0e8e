"""The state machine against the scripted backend: shape, concurrency, revisions, fallbacks."""

from typing import Any

import pytest

from graph import Models, RunContext, TiktokenCounter, build_graph, execute
from graph.ledger import NODES
from graph.result import Result
from graph.tokens import estimate
from tests.conftest import stub_models
from tests.stub_backend import StubBackend, count_tokens, model_name

Events = list[tuple[str, dict[str, Any]]]

GRAPH_SHAPE = """\
---
config:
  flowchart:
    curve: linear
---
graph TD;
\t__start__([<p>__start__</p>]):::first
\tplanner(planner)
\tcritic(critic)
\treviser(reviser)
\tsynthesizer(synthesizer)
\t__end__([<p>__end__</p>]):::last
\t__start__ --> planner;
\tcritic -.-> reviser;
\tcritic -.-> synthesizer;
\tplanner --> critic;
\treviser --> critic;
\tsynthesizer --> __end__;
\tclassDef default fill:#f2f0ff,line-height:1.2
\tclassDef first fill-opacity:0
\tclassDef last fill:#bfb6fc
"""
"""The compiled graph as LangGraph draws it: ``-->`` is a fixed edge, ``-.->`` a conditional one
(``after_critic``'s choice between revising and writing). The workers run inside the planner and
the reviser, each as soon as its dependencies have answers."""


async def run(stub: StubBackend, question: str = "How do tides work?", **ctx: Any) -> Result:
    result, _ = await run_with_events(stub, question, **ctx)
    return result


async def run_with_events(
    stub: StubBackend, question: str = "How do tides work?", models: Models | None = None, **ctx: Any
) -> tuple[Result, Events]:
    events: Events = []

    async def emit(name: str, data: dict[str, Any]) -> None:
        events.append((name, data))

    graph = build_graph(models or stub_models(stub))
    result = await execute(
        graph,
        question,
        RunContext(**{"max_attempts": 2, "retry_initial_s": 0.01, "max_concurrency": 16, **ctx}),
        run_id="run_test",
        question_count=await TiktokenCounter().count(question),
        emit=emit,
    )
    result_events = [name for name, _ in events]
    assert result_events[:2] == ["stage", "plan.task"]
    assert result_events[-1] == "usage"
    return result, events


def test_graph_shape(stub: StubBackend) -> None:
    """A snapshot: any node or edge added, removed or rerouted changes the drawing. If the change
    is meant, update GRAPH_SHAPE (and the README's diagram) from ``draw_mermaid()``."""
    assert build_graph(stub_models(stub)).get_graph().draw_mermaid() == GRAPH_SHAPE


@pytest.mark.parametrize("width", [1, 3, 6])
async def test_one_worker_per_subquestion(stub: StubBackend, width: int) -> None:
    stub.options.subtasks = width
    result = await run(stub, max_subtasks=8, max_revisions=0)
    assert [t["id"] for t in result["plan"]] == [f"t{i}" for i in range(1, width + 1)]
    assert len(stub.calls_of("worker")) == width
    assert [a["task_id"] for a in result["subanswers"]] == [t["id"] for t in result["plan"]]
    assert result["status"] == "completed"
    assert result["answer"] == "The final answer is 42."


async def test_plan_is_capped_by_max_subtasks(stub: StubBackend) -> None:
    stub.options.subtasks = 10
    result = await run(stub, max_subtasks=2, max_revisions=0)
    assert len(result["plan"]) == 2
    assert len(stub.calls_of("worker")) == 2


async def test_workers_are_in_flight_at_the_same_time(stub: StubBackend) -> None:
    stub.options.subtasks = 4
    stub.options.latency_s = 0.5
    result = await run(stub, max_revisions=0)
    workers = stub.calls_of("worker")
    assert len(workers) == 4
    latest_start = max(c.started for c in workers)
    earliest_end = min(c.finished for c in workers)
    assert latest_start < earliest_end, "every worker call started before the first one ended"
    assert result["timings"]["workers_ms"] < 4 * 500


async def test_revision_loop_is_bounded(stub: StubBackend) -> None:
    stub.options.subtasks = 2
    stub.options.critic_reply = (
        '{"verdicts": [{"task_id": "t1", "verdict": "revise", "feedback": "wrong"},'
        ' {"task_id": "t2", "verdict": "accept", "feedback": ""}]}'
    )
    result = await run(stub, max_revisions=2)
    assert len(stub.calls_of("critic")) == 2
    worker_tasks = [c["task_id"] for c in result["calls"] if c["node"] == "worker"]
    assert sorted(worker_tasks) == ["t1", "t1", "t1", "t2"]
    t1 = next(a for a in result["subanswers"] if a["task_id"] == "t1")
    assert t1["attempts"] == 3
    assert [v["round"] for v in result["critique"] if v["task_id"] == "t1"] == [1, 2]
    revision_prompt = stub.calls_of("worker")[-1].body["messages"][-1]["content"]
    assert "<reviewer_feedback>\nwrong" in revision_prompt


async def test_attempts_are_numbered_alike_in_calls_and_events(stub: StubBackend) -> None:
    stub.options.subtasks = 1
    stub.options.revise_first_round = True
    result, events = await run_with_events(stub, max_revisions=1)
    started = [data["attempt"] for name, data in events if name == "task.started"]
    rows = [c["attempt"] for c in result["calls"] if c["node"] == "worker"]
    assert started == rows == [1, 2]
    assert result["subanswers"][0]["attempts"] == 2


async def test_no_revisions_means_no_critic_call(stub: StubBackend) -> None:
    result = await run(stub, max_revisions=0)
    assert stub.calls_of("critic") == []
    assert result["critique"] == []


async def test_prose_plan_falls_back_to_the_whole_question(stub: StubBackend) -> None:
    stub.options.planner_reply = "Sure! First, think about the moon. Then the sun."
    result = await run(stub, question="How do tides work?", max_revisions=0)
    assert len(stub.calls_of("planner")) == 2, "one call and one repair attempt"
    assert result["plan"] == [{"id": "t1", "question": "How do tides work?", "depends_on": []}]
    assert result["fallbacks"][0]["node"] == "planner"
    assert result["fallbacks"][0]["kind"] == "single_subquestion"
    assert result["status"] == "completed"
    assert result["answer"]


async def test_empty_plan_falls_back(stub: StubBackend) -> None:
    stub.options.planner_reply = '{"subquestions": ["  ", ""]}'
    result = await run(stub, max_revisions=0)
    assert result["plan"] == [{"id": "t1", "question": "How do tides work?", "depends_on": []}]
    kinds = [f["kind"] for f in result["fallbacks"]]
    assert kinds == ["junk_subquestion", "junk_subquestion", "single_subquestion"]


async def test_missing_verdict_means_accept(stub: StubBackend) -> None:
    stub.options.subtasks = 2
    stub.options.critic_reply = '{"verdicts": [{"task_id": "t1", "verdict": "accept", "feedback": ""}]}'
    result = await run(stub, max_revisions=1)
    assert [(v["task_id"], v["verdict"]) for v in result["critique"]] == [
        ("t1", "accept"),
        ("t2", "accept"),
    ]
    assert result["fallbacks"] == [
        {"node": "critic", "kind": "missing_verdict", "detail": "no verdict for t2; accepted"}
    ]
    assert len(stub.calls_of("worker")) == 2


async def test_unparseable_critique_accepts_all(stub: StubBackend) -> None:
    stub.options.critic_reply = "They all look fine to me."
    result = await run(stub, max_revisions=1)
    assert len(stub.calls_of("critic")) == 2
    assert {v["verdict"] for v in result["critique"]} == {"accept"}
    assert result["fallbacks"][0]["kind"] == "accept_all"


async def test_ledger_equals_what_the_backend_reported(stub: StubBackend) -> None:
    stub.options.subtasks = 3
    stub.options.revise_first_round = True
    result = await run(stub, max_revisions=1)
    assert len(result["calls"]) == len(stub.calls) == 1 + 3 + 1 + 3 + 1
    reported = sorted((c.role, c.prompt_tokens, c.completion_tokens) for c in stub.calls)
    ledger = sorted((c["node"], c["prompt_tokens"], c["completion_tokens"]) for c in result["calls"])
    assert ledger == reported
    assert not any(c["estimated"] for c in result["calls"])
    assert [c["model"] for c in result["calls"]] == [model_name(c["node"]) for c in result["calls"]]


async def test_usage_is_what_the_backend_billed(stub: StubBackend) -> None:
    stub.options.subtasks = 3
    stub.options.revise_first_round = True
    result = await run(stub, max_revisions=1)
    usage = result["usage"]
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert usage["total_tokens"] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in result["calls"])
    assert usage["total_tokens"] == billed
    for node in NODES:
        calls = stub.calls_of(node)
        assert calls, node
        assert result["by_node"][node] == {
            "calls": len(calls),
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls),
            "total_tokens": sum(c.prompt_tokens + c.completion_tokens for c in calls),
            "cost_usd": None,  # no prices
        }, node
    (synth,) = stub.calls_of("synthesizer")
    assert usage["output_tokens"] == synth.completion_tokens == count_tokens("The final answer is 42.")
    assert usage["input_tokens"] == estimate("How do tides work?") == 6


async def test_synthesizer_failure_fails_the_run_with_its_calls(stub: StubBackend) -> None:
    from tests.stub_backend import Fault

    stub.inject("synthesizer", Fault(status=500), Fault(status=500))
    result = await run(stub, max_revisions=0)
    assert result["status"] == "failed"
    assert result["usage"]["output_tokens"] == 0
    assert result["error"] == {
        "kind": "upstream_unavailable",
        "message": "the model backend answered HTTP 500",
        "node": "synthesizer",
    }
    synth = [c for c in result["calls"] if c["node"] == "synthesizer"]
    assert [(c["attempt"], c["retry"]) for c in synth] == [(1, 0), (1, 1)]
    assert all(c["error"] for c in synth)
    assert result["answer"] == ""
