"""The lifecycle of runs in this process: submit, execute, cancel, shut down, recover.

A submitted run is stored, then executed in a background task (at most MAX_ACTIVE_RUNS at once);
its events go to its ``LiveRun`` (for followers) and to the store's writer. However a run ends
(completed, failed, cancelled, interrupted, or by a bug), it ends with one terminal event and a
resolved result, and its final state is committed even if storage is failing for a while.
"""

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from api.admission import admit
from api.backend import Backend
from api.errors import ApiError
from api.live import LiveRun, StopReason
from api.schemas import ReasonRequest
from api.settings import Settings
from api.store import Event, RunStore, Status
from graph import Graph, Result, RunContext, RunError, TokenCount, build_graph, execute
from graph.events import (
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_STARTED,
    EventData,
    EventName,
    RunEnded,
    RunSettings,
    RunStarted,
    TerminalEventName,
)
from graph.result import assemble

log = logging.getLogger(__name__)

TERMINAL_EVENT: dict[Status, TerminalEventName] = {
    "completed": RUN_COMPLETED,
    "partial": RUN_COMPLETED,
    "failed": RUN_FAILED,
    "cancelled": RUN_CANCELLED,
    "interrupted": RUN_INTERRUPTED,
}


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:16]}"


class Runner:
    def __init__(self, settings: Settings, backend: Backend, store: RunStore) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.graph: Graph = build_graph(backend.models)
        self.accepting = True
        self.live: dict[str, LiveRun] = {}
        """Runs of this process until their final state is committed."""
        self._unfinished = 0
        self._slots = asyncio.Semaphore(settings.max_active_runs)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> int:
        """Runs admitted and not finished yet (executing or queued)."""
        return self._unfinished

    async def submit(self, request: ReasonRequest, *, completion_budget: int | None = None) -> str:
        """Admit the run, store it as queued and start it in the background; returns its id."""
        s = self.settings
        if not self.accepting:
            raise ApiError(503, "the service is shutting down", type="server_error", code="shutting_down")
        if self._unfinished >= s.max_active_runs + s.max_queued_runs:
            raise ApiError(
                429,
                "too many runs in progress; retry later",
                type="rate_limit_error",
                code="too_many_runs",
                headers={"Retry-After": "5"},
            )
        self._unfinished += 1  # held from here, so concurrent submissions see it
        try:
            count = await self.backend.counter.count(request.question)
            admitted = time.monotonic()
            ctx = admit(request, s, count, now=admitted, completion_budget=completion_budget)
            run_id = new_run_id()
            await self.store.create(run_id, request.question, request.model_dump(exclude_none=True))
        except BaseException:
            self._unfinished -= 1
            raise
        live = LiveRun(run_id)
        self.live[run_id] = live
        live.task = asyncio.create_task(self._run(live, request, ctx, count, admitted), name=run_id)
        return run_id

    def _emit(self, live: LiveRun, name: EventName, data: EventData) -> None:
        self.store.append(live.append(name, data))

    async def _run(
        self, live: LiveRun, request: ReasonRequest, ctx: RunContext, count: TokenCount, admitted: float
    ) -> None:
        result: Result | None = None
        try:
            async with self._slots:
                if ctx.deadline is not None:  # it counts from the start, not from admission
                    ctx = dataclasses.replace(ctx, deadline=ctx.deadline + time.monotonic() - admitted)
                live.status = "running"
                self.store.set_status(live.run_id, "running")
                settings = RunSettings(
                    max_subtasks=ctx.max_subtasks,
                    max_revisions=ctx.max_revisions,
                    max_output_tokens=ctx.max_output_tokens,
                )
                started = RunStarted(
                    run_id=live.run_id,
                    question=request.question,
                    reasoning_effort=request.reasoning_effort,
                    settings=settings,
                )
                self._emit(live, RUN_STARTED, started)

                async def emit(name: EventName, data: EventData) -> None:
                    self._emit(live, name, data)

                result = await execute(
                    self.graph,
                    request.question,
                    ctx,
                    run_id=live.run_id,
                    question_count=count,
                    emit=emit,
                )
        except asyncio.CancelledError:
            # Stopped while queued (a started graph returns its own "cancelled" result).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            log.exception("run %s crashed", live.run_id)
            error = RunError(
                kind="internal_error", message="the run failed with an internal error", node=None
            )
            result = self._result(live, request, ctx, count, error=error)
        finally:
            self._finish(live, result or self._result(live, request, ctx, count, error=None))

    @staticmethod
    def _result(
        live: LiveRun, request: ReasonRequest, ctx: RunContext, count: TokenCount, *, error: RunError | None
    ) -> Result:
        return assemble(
            run_id=live.run_id,
            question=request.question,
            state=None,
            calls=ctx.ledger,
            question_tokens=count.tokens,
            question_exact=count.exact,
            total_ms=0.0,
            error=error,
            budget_exhausted=ctx.budget.exhausted,
            status=None if error is not None else "cancelled",
        )

    def _finish(self, live: LiveRun, result: Result) -> None:
        """End the run in memory at once (no await: nothing can skip this) and have its final
        state committed in the background."""
        status: Status = result["status"]
        if status == "cancelled" and live.stop_reason == "interrupted":
            status = "interrupted"
        name = TERMINAL_EVENT[status]
        event = live.append(name, RunEnded(run_id=live.run_id, result=result, error=result["error"]))
        live.end(status, result)
        self._unfinished -= 1
        log.info(
            "run finished",
            extra={
                "run_id": live.run_id,
                "status": status,
                "total_tokens": result["usage"]["total_tokens"],
                "duration_ms": result["timings"]["total_ms"],
            },
        )
        self._in_background(self._commit(live, status, result, event))

    async def _commit(self, live: LiveRun, status: Status, result: Result, event: Event) -> None:
        try:
            await self.store.finish(live.run_id, status, result, event)
        finally:
            self.live.pop(live.run_id, None)

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cancel(self, run_id: str, reason: StopReason = "cancelled") -> bool:
        """Stop a live run: no further model calls. False if it is not running here."""
        live = self.live.get(run_id)
        if live is None or live.finished or live.task is None or live.task.done():
            return False
        if live.stop_reason is None:  # once: a second cancel would cut the graph's own cleanup short
            live.stop_reason = reason
            live.task.cancel()
        await asyncio.wait({live.task})
        return True

    def cancel_later(self, run_id: str) -> None:
        """Cancel from a place that cannot wait (a stream's cleanup)."""
        self._in_background(self.cancel(run_id))

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new runs, give in-flight runs ``grace_s`` to finish, store the rest as
        interrupted, and commit what is queued."""
        self.accepting = False
        tasks = {live.task for live in self.live.values() if live.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for live in list(self.live.values()):
                if live.task in pending:
                    await self.cancel(live.run_id, "interrupted")
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)

    async def recover(self) -> list[str]:
        """Mark runs a previous process left unfinished as interrupted."""
        return await self.store.interrupt_unfinished()
