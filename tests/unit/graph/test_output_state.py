"""What LangGraph's own tools (``langgraph dev``, Studio) see of a run: its output state carries
the ledger's accounts, and each model call's messages are labelled with its own role."""

import time
from typing import Any

from graph import Price, RunContext, build_graph
from graph.ledger import by_node, summarize
from graph.tokens import estimate
from tests.conftest import stub_models
from tests.stub_backend import MODEL_NAMES, Fault, StubBackend, model_name

QUESTION = "How do tides work?"


def context(**fields: Any) -> RunContext:
    return RunContext(**{"max_attempts": 2, "retry_initial_s": 0.01, **fields})


async def test_the_output_carries_the_ledgers_accounts(stub: StubBackend) -> None:
    stub.options.subtasks = 3
    stub.options.revise_first_round = True
    prices = {model_name(role): Price(1.0, 2.0) for role in ("planner", "worker", "critic", "synthesizer")}
    ctx = context(max_revisions=1, prices=prices)
    output = await build_graph(stub_models(stub)).ainvoke({"question": QUESTION}, context=ctx)
    assert output["by_node"] == by_node(ctx.ledger, prices)
    assert output["usage"] == summarize(ctx.ledger, estimate(QUESTION), False, prices)
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert output["usage"]["total_tokens"] == billed
    assert output["by_node"]["worker"]["calls"] == len(stub.calls_of("worker")) == 3 + 3
    assert output["usage"]["cost_usd"] is not None and output["usage"]["cost_usd"] > 0


async def test_an_unsynthesized_answer_carries_them_too(stub: StubBackend) -> None:
    stub.options.subtasks = 2
    stub.inject("synthesizer", Fault(status=200, hang_s=4))
    ctx = context(max_revisions=0, deadline=time.monotonic() + 1)
    output = await build_graph(stub_models(stub)).ainvoke({"question": QUESTION}, context=ctx)
    assert output["fallbacks"][-1]["kind"] == "unsynthesized"
    assert output["by_node"] == by_node(ctx.ledger)
    assert output["by_node"]["synthesizer"]["calls"] == 1
    assert output["usage"]["output_tokens"] == 0


async def test_each_calls_messages_name_its_own_role(stub: StubBackend) -> None:
    """Workers run inside the planner and reviser nodes; their messages say ``worker``, with the
    task and attempt they answer."""
    stub.options.subtasks = 2
    stub.options.revise_first_round = True
    graph = build_graph(stub_models(stub))
    labels: set[tuple[str, str, str | None, int | None]] = set()
    async for _, metadata in graph.astream(
        {"question": QUESTION}, context=context(max_revisions=1), stream_mode="messages"
    ):
        role = MODEL_NAMES[metadata["ls_model_name"]]
        labels.add((role, metadata["langgraph_node"], metadata.get("task_id"), metadata.get("attempt")))
    assert labels == {
        ("planner", "planner", None, None),
        ("worker", "worker", "t1", 1),
        ("worker", "worker", "t2", 1),
        ("worker", "worker", "t1", 2),
        ("worker", "worker", "t2", 2),
        ("critic", "critic", None, None),
        ("synthesizer", "synthesizer", None, None),
    }
