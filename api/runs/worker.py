"""Executing one run: at most MAX_ACTIVE_RUNS at once, each in a background task.

A run's events go to its ``LiveRun`` (for followers) and to the store's writer, its calls to the
store's durable ledger. However a run ends (completed, failed, cancelled, interrupted, or by a
bug), it ends with one terminal event and a resolved result, and its final state is committed
even if storage is failing for a while. A run makes no model call once this process cannot be
sure it still holds the run's lease (see ``api.storage.leases``): it stops here, as when another
process has taken it over."""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from api.runs.errors import RunLeft
from api.runs.live import LET_GO, LiveRun
from api.runs.registry import Registry
from api.runs.request import ReasonRequest
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import Event, RunStore, Status
from api.telemetry.metrics import Metrics
from graph import CallRecord, Graph, Prices, Result, RunContext, RunError, TokenCount, execute
from graph.events import (
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RESUMED,
    RUN_STARTED,
    TOOL_RESULT,
    EventData,
    EventName,
    RunEnded,
    RunResumed,
    RunSettings,
    RunStarted,
    TerminalEventName,
    ToolResult,
    replay_key,
)
from graph.result import RunClock, assemble

log = logging.getLogger(__name__)

TERMINAL_EVENT: dict[Status, TerminalEventName] = {
    "completed": RUN_COMPLETED,
    "partial": RUN_COMPLETED,
    "failed": RUN_FAILED,
    "cancelled": RUN_CANCELLED,
    "interrupted": RUN_INTERRUPTED,
}


@dataclass(frozen=True)
class StoredCalls:
    """The run's journal writes to the store's durable ledger."""

    store: RunStore
    run_id: str

    def started(self, seq: int, row: CallRecord) -> None:
        self.store.record_call(self.run_id, seq, row, None)

    def ended(self, seq: int, row: CallRecord, output: str | None) -> None:
        self.store.record_call(self.run_id, seq, row, output)


@dataclass(frozen=True)
class Job:
    """A run to execute, as admitted. ``resumes``: None for a new run; for one taken up, how
    often its process died. ``created_at``: the stored run's creation time; ``seams``: the
    ``run.resumed`` events already in its log."""

    live: LiveRun
    request: ReasonRequest
    ctx: RunContext
    count: TokenCount
    admitted: float
    created_at: str
    resumes: int | None = None
    seams: int = 0


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        broker: Broker,
        registry: Registry,
        graph: Graph,
        prices: Prices,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.registry = registry
        self.graph = graph
        self.prices = prices
        self.metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_active_runs)

    def live_run(self, run_id: str, base: int = 0, repeats: set[tuple[object, ...]] | None = None) -> LiveRun:
        """The run as this process will hold it: ``base`` and ``repeats`` for one taken up."""
        return LiveRun(run_id, base=base, repeats=repeats or set(), store_healthy=lambda: self.store.healthy)

    def start(self, job: Job) -> None:
        """Execute the run in a background task; it is live here from now on."""
        self.registry.add(job.live)
        clock = dataclasses.replace(
            job.ctx.clock, created_at=datetime.fromisoformat(job.created_at), resumes=job.seams
        )
        job = dataclasses.replace(
            job, ctx=dataclasses.replace(job.ctx, fence=self._fence(job.live), clock=clock)
        )
        job.live.task = asyncio.create_task(self._run(job), name=job.live.run_id)

    def _fence(self, live: LiveRun) -> Callable[[], bool]:
        """The run's fence: no model call once this process cannot be sure it holds the run's
        lease (it was held up, or cut off from the store, past it). It stops the run as a
        takeover does, for good: a later renewal does not start it again here."""

        def may_call() -> bool:
            if live.stop_reason is None and not self.store.holds(live.run_id):
                log.warning("a run's lease may have lapsed; stopping it here", extra={"run_id": live.run_id})
                live.stop_reason = "lost"
            return live.stop_reason != "lost"

        return may_call

    def _emit(self, live: LiveRun, name: EventName, data: EventData) -> None:
        if name == TOOL_RESULT:  # a call made again after a resume is counted, though not logged twice
            self.metrics.tool_called(cast(ToolResult, data))
        if live.stop_reason in LET_GO:
            return  # what the run does while it is stopped is not part of its log
        if live.repeats and replay_key(name, data) in live.repeats:
            return  # written before the seam
        event = live.append(name, data)
        self.store.append(event, committed=lambda: self._stored(live, event.id))

    def _stored(self, live: LiveRun, event_id: int) -> None:
        live.stored_up_to(event_id)
        self.broker.changed(live.run_id)

    async def _run(self, job: Job) -> None:
        live, ctx = job.live, job.ctx
        result: Result | None = None
        began: float | None = None
        try:
            async with self._slots:
                began = time.perf_counter()
                if ctx.deadline is not None:  # it counts from the start, not from admission
                    ctx = dataclasses.replace(ctx, deadline=ctx.deadline + time.monotonic() - job.admitted)
                if self._begin(job):
                    ctx = dataclasses.replace(
                        ctx, clock=dataclasses.replace(ctx.clock, resumes=job.seams + 1)
                    )

                async def emit(name: EventName, data: EventData) -> None:
                    self._emit(live, name, data)

                if self.settings.checkpoint_durability == "exit":
                    self.store.checkpointer.hold(live.run_id, fresh=job.resumes is None)
                result = await execute(
                    self.graph,
                    job.request.question,
                    ctx,
                    run_id=live.run_id,
                    question_count=job.count,
                    emit=emit,
                    resume=job.resumes is not None,
                    durability=self.settings.checkpoint_durability,
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
            result = self._result(job, ctx.clock, began, error=error)
        finally:
            self._finish(live, result or self._result(job, ctx.clock, began, error=None))

    def _begin(self, job: Job) -> bool:
        """The run is running: its first event says whether it starts or resumes (True)."""
        live, ctx = job.live, job.ctx
        live.status = "running"
        self.store.set_status(live.run_id, "running")
        if job.resumes is not None and live.base:  # one that had not started just starts
            self._emit(
                live, RUN_RESUMED, RunResumed(run_id=live.run_id, resumes=job.resumes, after=live.base)
            )
            return True
        settings = RunSettings(
            max_subtasks=ctx.max_subtasks,
            max_revisions=ctx.max_revisions,
            max_output_tokens=ctx.max_output_tokens,
        )
        started = RunStarted(
            run_id=live.run_id,
            question=job.request.question,
            reasoning_effort=job.request.reasoning_effort,
            settings=settings,
        )
        self._emit(live, RUN_STARTED, started)
        return False

    @staticmethod
    def _result(job: Job, clock: RunClock, began: float | None, *, error: RunError | None) -> Result:
        """The result of a run that ended without one from the graph (stopped while queued, or
        a bug); ``began``: when it started executing, if it did."""
        return assemble(
            run_id=job.live.run_id,
            question=job.request.question,
            state=None,
            calls=job.ctx.ledger,
            question_tokens=job.count.tokens,
            question_exact=job.count.exact,
            execution_ms=0.0 if began is None else (time.perf_counter() - began) * 1000,
            error=error,
            clock=clock,
            budget_exhausted=job.ctx.budget.exhausted,
            status=None if error is not None else "cancelled",
            prices=job.ctx.prices,
        )

    def _finish(self, live: LiveRun, result: Result) -> None:
        """End the run in memory at once (no await: nothing can skip this) and have its final
        state committed in the background. A suspended run is not ended: its lease is given up
        for the next process to resume it, and only its checkpoint is written, if it was held."""
        self.registry.in_background(
            self.store.checkpointer.release(live.run_id, keep=live.stop_reason == "suspended")
        )
        if live.stop_reason in LET_GO:
            self.registry.release()
            self.registry.forget(live)
            lost = live.stop_reason == "lost"
            live.let_go(RunLeft(live.run_id, "taken_over" if lost else "suspended"))
            if lost:  # after its queued writes: if nobody took it, anyone may take it up now
                self.registry.in_background(self.store.release([live.run_id]))
            return
        status: Status = result["status"]
        if status == "cancelled" and live.stop_reason == "interrupted":
            status = "interrupted"
        name = TERMINAL_EVENT[status]
        event = live.append(name, RunEnded(run_id=live.run_id, result=result, error=result["error"]))
        live.end(status, result)
        self.registry.release()
        self.metrics.run_ended(status, result, self.prices)
        log.info(
            "run finished",
            extra={
                "run_id": live.run_id,
                "status": status,
                "total_tokens": result["usage"]["total_tokens"],
                "duration_ms": result["timings"]["total_ms"],
                "trace_id": result["trace_id"],
            },
        )
        self.registry.in_background(self._commit(live, status, result, event))

    async def _commit(self, live: LiveRun, status: Status, result: Result, event: Event) -> None:
        try:
            await self.store.finish(live.run_id, status, result, event)
            self._stored(live, event.id)
        finally:
            self.registry.forget(live)
