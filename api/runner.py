"""One run path for every face (HTTP, CLI): resolves the run's parameters, runs the graph,
numbers its events and hands them to the listener."""

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from api.backend import Backend
from api.schemas import Effort, ReasonRequest
from api.settings import Settings
from graph import Graph, Result, RunContext, build_graph, execute

log = logging.getLogger(__name__)

EFFORT: dict[Effort, tuple[int, int]] = {"low": (2, 0), "medium": (4, 1), "high": (6, 2)}
"""reasoning_effort → (sub-questions, revision rounds)."""


@dataclass(frozen=True)
class Event:
    """One step of a run, numbered from 1 within the run."""

    id: int
    run_id: str
    event: str
    data: dict[str, Any]


Listener = Callable[[Event], Awaitable[None]]


async def _ignore(event: Event) -> None:
    return None


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:16]}"


class Runner:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.graph: Graph = build_graph(backend.models)

    def context_for(self, request: ReasonRequest) -> RunContext:
        """Effort sets breadth and depth, explicit fields win, hard limits cap both."""
        s = self.settings
        subtasks, revisions = s.max_subtasks, s.max_revisions
        if request.reasoning_effort is not None:
            subtasks, revisions = EFFORT[request.reasoning_effort]
        if request.max_subtasks is not None:
            subtasks = request.max_subtasks
        if request.max_revisions is not None:
            revisions = request.max_revisions
        return RunContext(
            max_subtasks=min(subtasks, s.subtasks_limit),
            max_revisions=min(revisions, s.revisions_limit),
            max_output_tokens=s.max_output_tokens,
            timeout_s=s.llm_timeout_s,
            max_attempts=s.llm_max_attempts,
        )

    async def run(
        self, request: ReasonRequest, listener: Listener = _ignore, run_id: str | None = None
    ) -> Result:
        run_id = run_id or new_run_id()
        ctx = self.context_for(request)
        counter = 0

        async def emit(name: str, data: dict[str, Any]) -> None:
            nonlocal counter
            counter += 1
            await listener(Event(counter, run_id, name, data))

        await emit(
            "run.started",
            {
                "run_id": run_id,
                "question": request.question,
                "settings": {
                    "max_subtasks": ctx.max_subtasks,
                    "max_revisions": ctx.max_revisions,
                    "max_output_tokens": ctx.max_output_tokens,
                },
            },
        )
        result = await execute(
            self.graph,
            request.question,
            ctx,
            run_id=run_id,
            counter=self.backend.counter,
            emit=emit,
            max_concurrency=self.settings.max_concurrency,
        )
        if result["error"] is None:
            await emit("run.completed", {"result": result})
        else:
            await emit("run.failed", {"error": result["error"]})
        usage = result["usage"]
        log.info(
            "run finished",
            extra={
                "run_id": run_id,
                "status": result["status"],
                "total_tokens": usage["total_tokens"],
                "duration_ms": result["timings"]["total_ms"],
            },
        )
        return result
