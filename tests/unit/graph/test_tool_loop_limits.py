"""A tool loop stopped from outside: a cancel, and the run's deadline, while the model call after
a tool call is out. Neither makes another call, and the ledger keeps what was spent."""

import asyncio
import time
from typing import Any

from graph import RunContext, TiktokenCounter, build_graph, execute
from graph.result import Result
from graph.tools import CALCULATOR
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend
from tests.support.runs import until

PLAN = [{"id": "t1", "question": "calculate: 17 * 3", "depends_on": []}]
HANG = Fault(status=200, hang_s=30, match="<tool_result")
"""The worker's call after its tool call hangs."""


async def start(stub: StubBackend, ctx: RunContext) -> tuple["asyncio.Task[Result]", asyncio.Event]:
    tool_done = asyncio.Event()

    async def emit(name: str, data: Any) -> None:
        if name == "tool.result":
            tool_done.set()

    run = execute(
        build_graph(stub_models(stub)),
        "What is 17 * 3?",
        ctx,
        run_id="run_limits",
        question_count=await TiktokenCounter().count("What is 17 * 3?"),
        emit=emit,
    )
    return asyncio.create_task(run), tool_done


def worker_steps(result: Result) -> list[tuple[int | None, str | None]]:
    return [(c.get("step"), c["error"]) for c in result["calls"] if c["node"] == "worker"]


async def test_a_cancel_stops_the_loop_between_its_calls(stub: StubBackend) -> None:
    stub.options.plan = PLAN
    stub.inject("worker", HANG)
    ctx = RunContext(max_subtasks=1, max_revisions=0, tools={"calculator": CALCULATOR}, timeout_s=60)
    task, tool_done = await start(stub, ctx)
    await asyncio.wait_for(tool_done.wait(), 10)
    await asyncio.to_thread(until, lambda: len(stub.received) == 3, 10, "the call after the tool")
    task.cancel()
    result = await task
    assert result["status"] == "cancelled"
    assert worker_steps(result) == [(0, None), (1, "cancelled")]
    assert [role for role, _ in stub.received] == ["planner", "worker", "worker"], "nothing after the cancel"


async def test_the_deadline_cuts_the_loop_and_the_run_ends_with_what_it_has(stub: StubBackend) -> None:
    stub.options.plan = PLAN
    stub.inject("worker", HANG)
    ctx = RunContext(
        max_subtasks=1,
        max_revisions=0,
        tools={"calculator": CALCULATOR},
        timeout_s=60,
        deadline=time.monotonic() + 2.0,
        synthesis_time_s=0.5,
    )
    task, _ = await start(stub, ctx)
    result = await asyncio.wait_for(task, 10)
    steps = worker_steps(result)
    assert steps[0] == (0, None) and steps[1][1] is not None and "deadline" in str(steps[1][1])
    assert result["subanswers"][0]["status"] == "failed"
    assert "deadline" in str(result["subanswers"][0]["error"])
