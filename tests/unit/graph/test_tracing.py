"""Tracing: the spans of a run against the scripted backend (names, nesting, tokens, errors), and
the service's switch and resource."""

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, format_trace_id

from api.settings import Settings
from api.telemetry.otel import recorded, resource, tokens, traces_endpoint, tree
from graph import RunContext, TiktokenCounter, build_graph, execute
from graph.ledger import NODES
from graph.result import Result
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend
from tests.support.runs import PLAN

REVISE_T1 = (
    '{"verdicts": [{"task_id": "t1", "verdict": "revise", "feedback": "wrong"},'
    ' {"task_id": "t2", "verdict": "accept", "feedback": ""}]}'
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recorded() as exporter:
        yield exporter


async def run(stub: StubBackend, **ctx: Any) -> Result:
    async def emit(name: str, data: dict[str, Any]) -> None:
        pass

    question = "How do tides work?"
    return await execute(
        build_graph(stub_models(stub)),
        question,
        RunContext(**{"max_attempts": 2, "retry_initial_s": 0.01, **ctx}),
        run_id="run_traced",
        question_count=await TiktokenCounter().count(question),
        emit=emit,
    )


def by_id(finished: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in finished if s.context is not None}


def parent_of(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return spans.get(span.parent.span_id) if span.parent is not None else None


async def test_a_run_is_a_tree_of_agent_and_chat_spans(
    stub: StubBackend, spans: InMemorySpanExporter
) -> None:
    stub.options.subtasks = 2
    stub.options.critic_reply = REVISE_T1
    result = await run(stub, max_revisions=1)
    finished = spans.get_finished_spans()
    index = by_id(finished)
    (root,) = [s for s in finished if s.parent is None]
    assert root.name == "invoke_agent reasoner"
    assert root.attributes is not None
    assert root.attributes["reasoner.run_id"] == "run_traced"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["reasoner.status"] == result["status"] == "completed"
    assert result["trace_id"] == format_trace_id(root.context.trace_id)
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}

    shown = tree(finished)
    nodes = [s.name.removeprefix("invoke_agent ") for s in finished if parent_of(s, index) is root]
    assert sorted(nodes) == ["critic", "critic", "planner", "reviser", "synthesizer"], shown
    workers = [s for s in finished if s.name == "invoke_agent worker"]
    assert sorted((w.attributes or {})["reasoner.task_id"] for w in workers) == ["t1", "t1", "t2"]
    for worker in workers:  # run by the dispatcher of the node that planned (or revised) them
        parent = parent_of(worker, index)
        assert parent is not None and parent.name in ("invoke_agent planner", "invoke_agent reviser"), shown
    revised = next(w for w in workers if parent_of(w, index).name == "invoke_agent reviser")
    assert (revised.attributes or {})["reasoner.attempt"] == 2

    chats = [s for s in finished if s.name.startswith("chat ")]
    assert len(chats) == len(result["calls"])
    for chat in chats:
        attributes = chat.attributes or {}
        parent = parent_of(chat, index)
        assert parent is not None and parent.attributes is not None
        assert parent.attributes["gen_ai.agent.name"] == attributes["reasoner.node"], shown
        assert chat.name == f"chat {attributes['gen_ai.request.model']}"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.response.model"] == attributes["gen_ai.request.model"]
        assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert chat.status.status_code == StatusCode.UNSET
    for node in NODES:
        mine = [tokens(c) for c in chats if (c.attributes or {})["reasoner.node"] == node]
        assert sum(p for p, _ in mine) == result["by_node"][node]["prompt_tokens"], node
        assert sum(c for _, c in mine) == result["by_node"][node]["completion_tokens"], node


async def test_the_tree_of_a_trace(stub: StubBackend, spans: InMemorySpanExporter) -> None:
    stub.options.subtasks = 2
    result = await run(stub, max_revisions=0)
    lines = tree(spans.get_finished_spans()).splitlines()
    assert [re.sub(r"\s+[\d.]+ ms .*$", "", line) for line in lines] == [
        "invoke_agent reasoner",
        "  invoke_agent planner",
        "    chat stub-planner",
        "    invoke_agent worker t1",
        "      chat stub-worker",
        "    invoke_agent worker t2",
        "      chat stub-worker",
        "  invoke_agent critic",  # it runs, and makes no call: no round is left
        "  invoke_agent synthesizer",
        "    chat stub-synthesizer",
    ]
    totals = re.search(r"(\d+) in\s+(\d+) out$", lines[0])
    assert totals is not None
    prompt = sum(c["prompt_tokens"] for c in result["calls"])
    completion = sum(c["completion_tokens"] for c in result["calls"])
    assert (int(totals[1]), int(totals[2])) == (prompt, completion)


async def test_a_failed_attempt_is_an_error_span_and_a_failed_task_a_failed_agent(
    stub: StubBackend, spans: InMemorySpanExporter
) -> None:
    stub.options.plan = PLAN[:2]
    stub.inject("worker", Fault(status=503, match="Part 1"), Fault(status=400, match="Part 2"))
    result = await run(stub, max_revisions=0)
    assert result["status"] == "partial"
    finished = spans.get_finished_spans()
    index = by_id(finished)
    workers = {
        (s.attributes or {})["reasoner.task_id"]: s for s in finished if s.name == "invoke_agent worker"
    }
    tries = {
        task: [s for s in finished if s.name.startswith("chat ") and parent_of(s, index) is worker]
        for task, worker in workers.items()
    }
    retried, answered = tries["t1"]
    assert (retried.attributes or {})["error.type"] == "upstream_unavailable"
    assert retried.status.status_code == StatusCode.ERROR
    assert (retried.attributes or {})["gen_ai.usage.input_tokens"] == 0
    assert "error.type" not in (answered.attributes or {})
    assert workers["t1"].status.status_code == StatusCode.UNSET
    (refused,) = tries["t2"]
    assert (refused.attributes or {})["error.type"] == "upstream_bad_request"
    assert (workers["t2"].attributes or {})["error.type"] == "upstream_bad_request"
    assert workers["t2"].status.status_code == StatusCode.ERROR
    (root,) = [s for s in finished if s.parent is None]
    assert (root.attributes or {})["reasoner.status"] == "partial"
    assert root.status.status_code == StatusCode.UNSET


async def test_a_failed_run_is_an_error_span(stub: StubBackend, spans: InMemorySpanExporter) -> None:
    stub.inject("planner", Fault(status=401))
    result = await run(stub)
    assert result["status"] == "failed"
    (root,) = [s for s in spans.get_finished_spans() if s.parent is None]
    assert (root.attributes or {})["error.type"] == "upstream_auth"
    assert root.status.status_code == StatusCode.ERROR
    (planner,) = [s for s in spans.get_finished_spans() if s.name == "invoke_agent planner"]
    assert (planner.attributes or {})["error.type"] == "upstream_auth"


async def test_a_cancelled_run_is_no_error(stub: StubBackend, spans: InMemorySpanExporter) -> None:
    stub.options.latency_s = 5
    task = asyncio.create_task(run(stub))

    async def called() -> None:
        while not stub.received:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(called(), 10)
    task.cancel()
    result = await task
    assert result["status"] == "cancelled"
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} == {
        "invoke_agent reasoner",
        "invoke_agent planner",
        "chat stub-planner",
    }
    assert all(s.status.status_code == StatusCode.UNSET for s in finished)
    assert all((s.attributes or {}).get("reasoner.cancelled") for s in finished if s.parent is not None)


async def test_without_a_provider_nothing_is_recorded(stub: StubBackend) -> None:
    assert not isinstance(trace.get_tracer_provider(), TracerProvider), "no SDK provider in this process"
    result = await run(stub, max_revisions=0)
    assert result["trace_id"] is None


def settings(**fields: str) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_tracing_is_on_only_with_an_endpoint() -> None:
    assert traces_endpoint(settings()) is None
    assert (
        traces_endpoint(settings(otel_exporter_otlp_endpoint="http://c:4318/")) == "http://c:4318/v1/traces"
    )
    both = settings(
        otel_exporter_otlp_endpoint="http://c:4318", otel_exporter_otlp_traces_endpoint="http://t/x"
    )
    assert traces_endpoint(both) == "http://t/x"


def test_the_service_is_named_reasoner_unless_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource().attributes["service.name"] == "reasoner"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=test")
    assert resource().attributes["service.name"] == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "named")
    assert resource().attributes["service.name"] == "named"
    assert resource().attributes["deployment.environment"] == "test"
