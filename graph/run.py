"""Drives one run of a compiled graph: streams its progress out and returns the Result."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from langgraph.types import Durability

from graph import tracing
from graph.builder import Graph
from graph.context import RunContext
from graph.errors import Fenced, ModelCallError
from graph.events import USAGE, EventData, EventName, ProgressEvent, UsageReport
from graph.result import Result, RunError, assemble
from graph.state import InputState, OutputState
from graph.tokens import TokenCount

log = logging.getLogger(__name__)

Emit = Callable[[EventName, EventData], Awaitable[None]]
"""Receives each progress event (name, data) the moment the graph produces it."""


@tracing.run
async def execute(
    graph: Graph,
    question: str,
    ctx: RunContext,
    *,
    run_id: str,
    question_count: TokenCount,
    emit: Emit,
    resume: bool = False,
    durability: Durability = "async",
) -> Result:
    """Run the graph to the end and return its Result.

    Backend failures become a failed Result, never an exception. Cancelling the task that runs
    this stops further model calls and returns a "cancelled" Result with the calls made so far;
    so does the run's fence (``ctx.fence``) once it says no.
    With ``resume``, a graph compiled with a checkpointer goes on from the run's last checkpoint
    (and starts over where it has none); ``ctx.journal`` replays the calls that had returned.
    """
    started = time.perf_counter()
    state: OutputState | None = None
    error: RunError | None = None
    cancelled = False
    config: dict[str, Any] = {
        "recursion_limit": 8 + 4 * (ctx.max_revisions + 1),
        "run_name": "reasoner",
        "metadata": {"run_id": run_id},
        "configurable": {"thread_id": run_id},
    }
    graph_input: InputState | None = {"question": question}
    try:
        if resume and graph.checkpointer is not None:
            saved = await graph.aget_state(cast(Any, config))
            if saved.next:
                graph_input = None
            elif saved.values.get("answer") is not None:  # it had ended; only its result was lost
                state = cast(OutputState, saved.values)
        if state is None:
            async for mode, chunk in graph.astream(
                graph_input,
                cast(Any, config),
                context=ctx,
                stream_mode=["custom", "values"],
                durability=durability if graph.checkpointer is not None else None,
            ):
                if mode == "values":
                    state = cast(OutputState, chunk)
                else:
                    event = cast(ProgressEvent, chunk)
                    await emit(event["event"], event["data"])
    except asyncio.CancelledError:
        # The caller cancelled the run: stop, but still account for what was spent.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        cancelled = True
    except Fenced:
        cancelled = True  # stopped by its fence, as by a cancel: the calls made are accounted for
    except ModelCallError as exc:
        error = RunError(kind=exc.kind, message=exc.message, node=exc.node)
    except Exception as exc:
        log.exception("run %s failed with an internal error", run_id)
        error = RunError(kind="internal_error", message=type(exc).__name__, node=None)
    result = assemble(
        run_id=run_id,
        question=question,
        state=state,
        calls=ctx.ledger,
        question_tokens=question_count.tokens,
        question_exact=question_count.exact,
        execution_ms=(time.perf_counter() - started) * 1000,
        error=error,
        clock=ctx.clock,
        budget_exhausted=ctx.budget.exhausted,
        status="cancelled" if cancelled else None,
        prices=ctx.prices,
        trace_id=tracing.trace_id(),
    )
    await emit(USAGE, UsageReport(usage=result["usage"], by_node=result["by_node"]))
    return result
