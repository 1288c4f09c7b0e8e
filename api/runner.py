"""One run path for every face (REST, SSE, the OpenAI route, the CLI).

The runner resolves a request into the run's parameters, runs the graph in a background task,
numbers the events the graph produces, stores them and wakes whoever follows the run.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from api.backend import Backend
from api.schemas import Effort, ReasonRequest
from api.settings import Settings
from api.store import Event, RunRecord, RunStore, Status
from graph import Graph, Result, RunContext, TokenCount, build_graph, execute
from graph.budget import MIN_CALL_OUTPUT, Budget, Shape, estimated_cost, fit
from graph.result import RunStatus, assemble

log = logging.getLogger(__name__)

EFFORT: dict[Effort, tuple[int, int]] = {"low": (2, 0), "medium": (4, 1), "high": (6, 2)}
"""reasoning_effort → (sub-questions, revision rounds)."""

HEARTBEAT = None
"""What ``follow`` yields when nothing happened for a heartbeat interval."""


class RunNotFound(LookupError):
    pass


class RunRejected(Exception):
    """The run is refused before any model call; ``status`` is the HTTP status that fits."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after


@dataclass
class LiveRun:
    """A run of this process that has not finished: its events so far, and who waits on them."""

    run_id: str
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    finished: bool = False
    result: asyncio.Future[Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None
    stop_reason: Literal["cancelled", "interrupted"] | None = None
    stored: bool = False
    """The final status, result and terminal event are stored."""


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:16]}"


class Runner:
    def __init__(self, settings: Settings, backend: Backend, store: RunStore) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.graph: Graph = build_graph(backend.models)
        self.accepting = True
        self.followers = 0
        self._unfollowed = asyncio.Event()
        self._unfollowed.set()
        self._live: dict[str, LiveRun] = {}
        self._slots = asyncio.Semaphore(settings.max_active_runs)

    def shape_for(self, request: ReasonRequest) -> Shape:
        """Effort sets breadth and depth, explicit fields win, hard limits cap both."""
        s = self.settings
        subtasks, revisions = s.max_subtasks, s.max_revisions
        if request.reasoning_effort is not None:
            subtasks, revisions = EFFORT[request.reasoning_effort]
        if request.max_subtasks is not None:
            subtasks = request.max_subtasks
        if request.max_revisions is not None:
            revisions = request.max_revisions
        return Shape(min(subtasks, s.subtasks_limit), min(revisions, s.revisions_limit), s.max_output_tokens)

    async def check(self, request: ReasonRequest, count: TokenCount) -> Shape:
        """Refuse what cannot run (too long, budget too small, service full) and fit the rest."""
        if not self.accepting:
            raise RunRejected(503, "the service is shutting down", code="shutting_down")
        limit = self.settings.max_active_runs + self.settings.max_queued_runs
        if len(self._live) >= limit:
            raise RunRejected(
                429, "too many runs in progress; retry later", code="too_many_runs", retry_after=5
            )
        if count.tokens > self.settings.max_question_tokens:
            raise RunRejected(
                400,
                f"the question has {count.tokens} tokens; the limit is {self.settings.max_question_tokens}",
                code="question_too_long",
                param="question",
            )
        shape = fit(self.shape_for(request), count.tokens, request.token_budget)
        if request.token_budget is not None:
            smallest = estimated_cost(Shape(1, 0, MIN_CALL_OUTPUT * 2), count.tokens)
            if request.token_budget < smallest:
                raise RunRejected(
                    400,
                    f"token_budget {request.token_budget} is too small to answer this question; "
                    f"it needs at least {smallest}",
                    code="budget_too_small",
                    param="token_budget",
                )
        return shape

    def context_for(self, request: ReasonRequest, shape: Shape) -> RunContext:
        s = self.settings
        deadline_s = min(request.deadline_s or s.run_deadline_s, s.run_deadline_s)
        return RunContext(
            max_subtasks=shape.subtasks,
            max_revisions=shape.revisions,
            max_output_tokens=shape.output_tokens,
            timeout_s=s.llm_timeout_s,
            max_attempts=s.llm_max_attempts,
            retry_initial_s=s.llm_retry_initial_s,
            deadline=time.monotonic() + deadline_s,
            synthesis_time_s=min(s.llm_timeout_s, deadline_s / 4),
            budget=Budget(tokens=request.token_budget, max_calls=s.max_calls_per_run),
        )

    @property
    def active(self) -> int:
        return len(self._live)

    async def submit(self, request: ReasonRequest, *, completion_budget: int | None = None) -> str:
        """Store the run as queued and start it in the background; returns its id.

        ``completion_budget`` caps everything but the question (reasoning + output), as OpenAI's
        ``max_completion_tokens`` does.
        """
        count = await self.backend.counter.count(request.question)
        if completion_budget is not None:
            request = request.model_copy(update={"token_budget": completion_budget + count.tokens})
        shape = await self.check(request, count)
        run_id = new_run_id()
        self.store.create(run_id, request.question, request.model_dump(exclude_none=True))
        live = LiveRun(run_id)
        self._live[run_id] = live
        live.task = asyncio.create_task(self._run(live, request, shape, count), name=run_id)
        return run_id

    async def _emit(self, live: LiveRun, name: str, data: dict[str, Any]) -> None:
        event = Event(len(live.events) + 1, live.run_id, name, data)
        self.store.append(event)
        live.events.append(event)
        async with live.changed:
            live.changed.notify_all()

    async def _run(self, live: LiveRun, request: ReasonRequest, shape: Shape, count: TokenCount) -> None:
        run_id = live.run_id
        try:
            async with self._slots:
                await self._execute(live, request, shape, count)
        except asyncio.CancelledError:
            # Cancelled while queued, or outside the graph's own cancellation handling.
            if live.stored:
                return
            status: RunStatus = "interrupted" if live.stop_reason == "interrupted" else "cancelled"
            result = assemble(
                run_id=run_id,
                question=request.question,
                state=None,
                calls=[],
                question_tokens=0,
                question_exact=False,
                total_ms=0.0,
                error=None,
                status=status,
            )
            self.store.finish(run_id, status, result)
            await self._emit(live, f"run.{status}", {"run_id": run_id, "result": result})
            live.stored = True
            live.result.set_result(result)
        finally:
            live.finished = True
            self._live.pop(run_id, None)
            async with live.changed:
                live.changed.notify_all()

    async def _execute(self, live: LiveRun, request: ReasonRequest, shape: Shape, count: TokenCount) -> None:
        run_id = live.run_id
        ctx = self.context_for(request, shape)
        try:
            self.store.set_status(run_id, "running")
            settings = {
                "max_subtasks": ctx.max_subtasks,
                "max_revisions": ctx.max_revisions,
                "max_output_tokens": ctx.max_output_tokens,
            }
            await self._emit(
                live, "run.started", {"run_id": run_id, "question": request.question, "settings": settings}
            )
            result = await execute(
                self.graph,
                request.question,
                ctx,
                run_id=run_id,
                question_count=count,
                emit=lambda name, data: self._emit(live, name, data),
                max_concurrency=self.settings.max_concurrency,
            )
            if result["status"] == "cancelled" and live.stop_reason == "interrupted":
                result["status"] = "interrupted"
            status: Status = result["status"]
            self.store.finish(run_id, status, result)
            if status in ("completed", "partial"):
                await self._emit(live, "run.completed", {"result": result})
            elif status == "failed":
                await self._emit(live, "run.failed", {"error": result["error"], "result": result})
            elif status == "cancelled":
                await self._emit(live, "run.cancelled", {"run_id": run_id, "result": result})
            else:
                await self._emit(live, "run.interrupted", {"run_id": run_id, "result": result})
            live.stored = True
            live.result.set_result(result)
            log.info(
                "run finished",
                extra={
                    "run_id": run_id,
                    "status": status,
                    "total_tokens": result["usage"]["total_tokens"],
                    "duration_ms": result["timings"]["total_ms"],
                },
            )
        except Exception as exc:
            log.exception("run %s crashed", run_id)
            self.store.finish(run_id, "failed", None)
            if not live.result.done():
                live.result.set_exception(exc)
                live.result.exception()

    async def wait(self, run_id: str) -> Result:
        """The run's result, once it has one."""
        live = self._live.get(run_id)
        if live is not None:
            return await asyncio.shield(live.result)
        record = self.store.get(run_id)
        if record is None or record.result is None:
            raise RunNotFound(run_id)
        return record.result

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[Event | None]:
        """Replay the run's events after ``after``, then follow it live until it ends.

        Yields ``HEARTBEAT`` (None) whenever nothing happened for the heartbeat interval.
        """
        live = self._live.get(run_id)
        if live is None:
            if self.store.get(run_id) is None:
                raise RunNotFound(run_id)
            for event in self.store.events(run_id, after):
                yield event
            return
        seen = max(0, after)
        self.followers += 1
        self._unfollowed.clear()
        try:
            while True:
                while seen < len(live.events):
                    seen += 1
                    yield live.events[seen - 1]
                if live.finished:
                    return
                if not await self._wait_for_more(live, seen):
                    yield HEARTBEAT
        finally:
            self.followers -= 1
            if not self.followers:
                self._unfollowed.set()

    async def _wait_for_more(self, live: LiveRun, seen: int) -> bool:
        """Wait until the run has more than ``seen`` events or ends; False on a heartbeat timeout."""

        def more() -> bool:
            return live.finished or seen < len(live.events)

        try:
            async with live.changed:
                await asyncio.wait_for(live.changed.wait_for(more), timeout=self.settings.sse_heartbeat_s)
        except TimeoutError:
            return False
        return True

    def record(self, run_id: str) -> RunRecord:
        record = self.store.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    def status(self, run_id: str) -> Status:
        return self.record(run_id).status

    async def cancel(self, run_id: str, reason: Literal["cancelled", "interrupted"] = "cancelled") -> bool:
        """Stop a live run: no further model calls. False if it had already finished."""
        live = self._live.get(run_id)
        if live is None or live.task is None:
            if self.store.get(run_id) is None:
                raise RunNotFound(run_id)
            return False
        live.stop_reason = reason
        live.task.cancel()
        await asyncio.wait({live.task})
        return True

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new runs, give in-flight runs ``grace_s`` to finish, then store them as interrupted."""
        self.accepting = False
        tasks = {live.task for live in self._live.values() if live.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for live in list(self._live.values()):
                if live.task in pending:
                    await self.cancel(live.run_id, "interrupted")

    async def streams_closed(self, timeout_s: float) -> bool:
        """Wait until no stream follows a live run; False if some still do after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._unfollowed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def recover(self) -> list[str]:
        """Mark runs a previous process left unfinished as interrupted."""
        return self.store.interrupt_unfinished()
