"""The lifecycle of runs in this process: submit, execute, cancel, shut down, take up.

A submitted run is stored, then executed in a background task (at most MAX_ACTIVE_RUNS at once);
its events go to its ``LiveRun`` (for followers) and to the store's writer, its calls to the
store's durable ledger. However a run ends (completed, failed, cancelled, interrupted, or by a
bug), it ends with one terminal event and a resolved result, and its final state is committed
even if storage is failing for a while.

Runs outlive their process. This process renews its leases on its runs while it lives and, as
long as it runs, takes up the unfinished runs of processes that are gone: it resumes them from
their checkpoints (``RESUME_RUNS``), or stores them as interrupted, or as failed once one has
been resumed ``MAX_RESUMES`` times. A shutdown leaves the runs it cannot finish to resume. A run
makes no model call once this process cannot be sure it still holds the run's lease (see
``api.runs.leases``): it stops here, as when another process has taken it over.

On a shared store (Postgres) this process is one replica of several: a run it has no free slot
for waits in the store, and every replica's upkeep (each second, or at once when the broker
wakes it) claims waiting runs for its free slots and stops its runs that a caller cancelled on
another replica.
"""

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from api.backend.connect import Backend
from api.backend.prices import prices_for
from api.runs.admission import admit, granted
from api.runs.errors import Busy, Conflict, RunLeft, RunServiceError, ShuttingDown
from api.runs.live import LET_GO, LiveRun, StopReason
from api.runs.quotas import Quota, allowance
from api.runs.request import ReasonRequest
from api.runs.tenants import Tenant
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import (
    REPLAY_PAGE,
    Claim,
    Event,
    Grant,
    IdempotencyKey,
    IdempotencyKeyReused,
    RunStore,
    Spend,
    Status,
)
from api.telemetry.metrics import Metrics
from graph import CallRecord, Graph, Result, RunContext, RunError, TokenCount, build_graph, execute
from graph.events import (
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RESUMED,
    RUN_STARTED,
    EventData,
    EventName,
    RunEnded,
    RunResumed,
    RunSettings,
    RunStarted,
    TerminalEventName,
    replay_key,
)
from graph.journal import Entry, Journal
from graph.result import assemble

log = logging.getLogger(__name__)

TERMINAL_EVENT: dict[Status, TerminalEventName] = {
    "completed": RUN_COMPLETED,
    "partial": RUN_COMPLETED,
    "failed": RUN_FAILED,
    "cancelled": RUN_CANCELLED,
    "interrupted": RUN_INTERRUPTED,
}


RETENTION_EVERY_S = 3600.0
TICK_S = 1.0
"""On a shared store without a broker (no Redis, or Redis lost), how often a replica looks in the
store for queued runs and cancel requests; with one, it is woken at once, and looks there only
when it renews its leases."""


def new_run_id() -> str:
    return f"run_{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Submitted:
    run_id: str
    replayed: bool = False
    """The Idempotency-Key named a run made earlier: this is that run."""


@dataclass(frozen=True)
class StoredCalls:
    """The run's journal writes to the store's durable ledger."""

    store: RunStore
    run_id: str

    def started(self, seq: int, row: CallRecord) -> None:
        self.store.record_call(self.run_id, seq, row, None)

    def ended(self, seq: int, row: CallRecord, output: str | None) -> None:
        self.store.record_call(self.run_id, seq, row, output)


class Runner:
    def __init__(
        self, settings: Settings, backend: Backend, store: RunStore, broker: Broker | None = None
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.broker = broker or Broker()
        self.broker.on_wake = self.poke
        self.broker.on_cancel = self._cancel_if_here
        self.graph: Graph = build_graph(backend.models, checkpointer=store.checkpointer)
        self.prices = prices_for(settings.prices_file, backend)
        self.metrics = Metrics()
        self.accepting = True
        self.live: dict[str, LiveRun] = {}
        """Runs of this process until their final state is committed."""
        self._unfinished = 0
        self._slots = asyncio.Semaphore(settings.max_active_runs)
        self._background: set[asyncio.Task[Any]] = set()
        self._upkeep: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()

    @property
    def active(self) -> int:
        """Runs admitted and not finished yet (executing or queued)."""
        return self._unfinished

    async def submit(
        self,
        request: ReasonRequest,
        *,
        completion_budget: int | None = None,
        tenant: Tenant | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Submitted:
        """Admit the run, store it as queued and start it in the background.

        ``tenant``: the API key it belongs to, whose quotas it is held to. With ``idempotency``,
        a run made earlier under the same key is returned instead (``Submitted.replayed``).
        On a shared store, a run this process has no free slot for is left queued in the store
        for any replica to claim, and MAX_QUEUED_RUNS counts the runs queued there."""
        s = self.settings
        if not self.accepting:
            raise ShuttingDown
        here = not self.store.shared or self._unfinished < s.max_active_runs
        if here:
            full = self._unfinished >= s.max_active_runs + s.max_queued_runs
        else:
            full = await self.store.queued() >= s.max_queued_runs
        if full:
            raise Busy("too many runs in progress; retry later", code="too_many_runs", retry_after_s=5)
        self._unfinished += 1  # held from here, so concurrent submissions see it
        try:
            count = await self.backend.counter.count(request.question)
            admitted = time.monotonic()
            ctx = self._admit(request, count, admitted, completion_budget)
            grant: Grant | None = None
            if tenant is not None and tenant.limits.any:
                limits = tenant.limits

                def grant(spend: Spend) -> dict[str, Any]:
                    """In the store's transaction: the run within what is left of the quotas."""
                    nonlocal ctx
                    ctx = self._admit(request, count, admitted, completion_budget, allowance(limits, spend))
                    models = self.backend.models.names
                    return granted(request, ctx, self.prices, models).model_dump(exclude_none=True)

            run_id = new_run_id()
            record = await self.store.create(
                run_id,
                request.question,
                request.model_dump(exclude_none=True),
                lease_s=s.lease_s,
                completion_budget=completion_budget,
                owned=here,
                key_hash=tenant.key_hash if tenant is not None else None,
                grant=grant,
                idempotency=idempotency,
            )
        except IdempotencyKeyReused:
            self._unfinished -= 1
            raise Conflict(
                "this Idempotency-Key was used with another request; use a new key for a new request",
                code="idempotency_key_reused",
            ) from None
        except BaseException:
            self._unfinished -= 1
            raise
        if record.id != run_id or not here:  # an earlier run of the same key, or left for any replica
            self._unfinished -= 1
            if record.id == run_id:
                self.broker.wake()
            return Submitted(record.id, replayed=record.id != run_id)
        ctx = dataclasses.replace(ctx, journal=Journal(StoredCalls(self.store, run_id)))
        self._start(self._live_run(run_id), request, ctx, count, admitted)
        return Submitted(run_id)

    def _admit(
        self,
        request: ReasonRequest,
        count: TokenCount,
        admitted: float,
        completion_budget: int | None,
        quota: Quota | None = None,
    ) -> RunContext:
        return admit(
            request,
            self.settings,
            count,
            now=admitted,
            completion_budget=completion_budget,
            prices=self.prices,
            models=self.backend.models.names,
            quota=quota,
            rates=self.backend.models.rates(),
        )

    def _live_run(self, run_id: str, **kwargs: Any) -> LiveRun:
        return LiveRun(run_id, store_healthy=lambda: self.store.healthy, **kwargs)

    def _start(
        self,
        live: LiveRun,
        request: ReasonRequest,
        ctx: RunContext,
        count: TokenCount,
        admitted: float,
        resumes: int | None = None,
    ) -> None:
        """``resumes``: None for a new run; for one taken up, how often its process died."""
        self.live[live.run_id] = live
        ctx = dataclasses.replace(ctx, fence=self._fence(live))
        work = self._run(live, request, ctx, count, admitted, resumes)
        live.task = asyncio.create_task(work, name=live.run_id)

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
        if live.stop_reason in LET_GO:
            return  # what the run does while it is stopped is not part of its log
        if live.repeats and replay_key(name, data) in live.repeats:
            return  # written before the seam
        event = live.append(name, data)
        self.store.append(event, committed=lambda: self._stored(live, event.id))

    def _stored(self, live: LiveRun, event_id: int) -> None:
        live.stored_up_to(event_id)
        self.broker.changed(live.run_id)

    async def _run(
        self,
        live: LiveRun,
        request: ReasonRequest,
        ctx: RunContext,
        count: TokenCount,
        admitted: float,
        resumes: int | None,
    ) -> None:
        result: Result | None = None
        try:
            async with self._slots:
                if ctx.deadline is not None:  # it counts from the start, not from admission
                    ctx = dataclasses.replace(ctx, deadline=ctx.deadline + time.monotonic() - admitted)
                live.status = "running"
                self.store.set_status(live.run_id, "running")
                if resumes is not None and live.base:  # one that had not started just starts
                    resumed = RunResumed(run_id=live.run_id, resumes=resumes, after=live.base)
                    self._emit(live, RUN_RESUMED, resumed)
                else:
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
                    resume=resumes is not None,
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
            prices=ctx.prices,
        )

    def _finish(self, live: LiveRun, result: Result) -> None:
        """End the run in memory at once (no await: nothing can skip this) and have its final
        state committed in the background. A suspended run is not ended: its lease is given up
        for the next process to resume it."""
        if live.stop_reason in LET_GO:
            self._unfinished -= 1
            self._forget(live)
            lost = live.stop_reason == "lost"
            live.let_go(RunLeft(live.run_id, "taken_over" if lost else "suspended"))
            if lost:  # after its queued writes: if nobody took it, anyone may take it up now
                self._in_background(self.store.release([live.run_id]))
            return
        status: Status = result["status"]
        if status == "cancelled" and live.stop_reason == "interrupted":
            status = "interrupted"
        name = TERMINAL_EVENT[status]
        event = live.append(name, RunEnded(run_id=live.run_id, result=result, error=result["error"]))
        live.end(status, result)
        self._unfinished -= 1
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
        self._in_background(self._commit(live, status, result, event))

    async def _commit(self, live: LiveRun, status: Status, result: Result, event: Event) -> None:
        try:
            await self.store.finish(live.run_id, status, result, event)
            self._stored(live, event.id)
        finally:
            self._forget(live)

    def _forget(self, live: LiveRun) -> None:
        if self.live.get(live.run_id) is live:  # not a later LiveRun of the same run
            del self.live[live.run_id]
        self.poke()  # a slot is free

    def poke(self) -> None:
        """Look for runs to take up now (a run was queued, or a slot freed)."""
        if self.store.shared:
            self._poked.set()

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

    def _cancel_if_here(self, run_id: str) -> None:
        if run_id in self.live:
            self.cancel_later(run_id)

    async def cancel_elsewhere(self, run_id: str) -> bool:
        """Cancel a run this process does not run, on a shared store: end it at once if nobody
        runs it (queued, or its replica is gone), or ask the replica that runs it. False if it
        has finished, or the store is not shared."""
        if not self.store.shared:
            return False
        if await self.store.claim(self.settings.lease_s, run_id=run_id):
            entries = await self.store.calls(run_id)
            last = await self.store.last_event_id(run_id)
            await self._end_unfinished(run_id, last, entries, "cancelled", None)
            return True
        if not await self.store.request_cancel(run_id):
            return False
        self.broker.cancel(run_id)
        return True

    async def shutdown(self, grace_s: float, *, leave_to_resume: bool | None = None) -> None:
        """Refuse new runs and give in-flight runs ``grace_s`` to finish. The rest are left to
        resume in the next process (by default where ``RESUME_RUNS``) or stored as interrupted.
        Then commit what is queued."""
        self.accepting = False  # the upkeep goes on renewing the leases, but takes nothing up
        tasks = {live.task for live in self.live.values() if live.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            resume = self.settings.resume_runs if leave_to_resume is None else leave_to_resume
            reason: StopReason = "suspended" if resume else "interrupted"
            left = [live.run_id for live in self.live.values() if live.task in pending]
            for run_id in left:
                await self.cancel(run_id, reason)
            if reason == "suspended":
                await self.store.release(left)
                self.broker.wake()  # another replica may take them up at once
                log.warning("runs left to resume in the next process", extra={"runs": left})
        if self._upkeep is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)

    async def start(self, *, take_up: bool = True) -> None:
        """Keep this process's leases in the background and, with ``take_up``, take up what
        processes that are gone left unfinished (now, and as long as it runs), and apply the
        retention."""
        if take_up:
            await self.take_up()
        self._upkeep = asyncio.create_task(self._keep_up(take_up), name="runner-upkeep")

    async def _keep_up(self, take_up: bool) -> None:
        s = self.settings
        every = s.lease_s / 3
        pruned = -RETENTION_EVERY_S
        renewed, failed = time.monotonic(), False
        while True:
            polling = self.store.shared and not self.broker.connected
            tick = min(TICK_S, every) if polling or failed else every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), tick)
            self._poked.clear()
            try:
                if failed or time.monotonic() - renewed >= every * 0.9:
                    renewed, failed = time.monotonic(), True  # a failed renewal is retried each tick
                    await self._renew()
                    failed = False
                if self.store.shared:
                    for run_id in await self.store.cancel_requested():
                        self._cancel_if_here(run_id)
                if not take_up:
                    continue
                if self.accepting:
                    await self.take_up()
                if s.retention_days is not None and time.monotonic() - pruned >= RETENTION_EVERY_S:
                    pruned = time.monotonic()
                    cutoff = datetime.now(UTC) - timedelta(days=s.retention_days)
                    deleted = await self.store.delete_before(cutoff.isoformat(timespec="microseconds"))
                    if deleted:
                        log.info("deleted old runs", extra={"runs": deleted})
            except Exception:  # storage trouble (or a bug): the next round tries again
                log.exception("the runner's upkeep failed; retrying")

    async def _renew(self) -> None:
        """Keep this process's leases; stop (without a word to the store) the runs it no longer
        owns: it was held up past a lease, and another process has taken them over."""
        before = set(self.live)  # stored before the renewal: a later run cannot look lost
        owned = await self.store.renew(self.settings.lease_s)
        for run_id in before - owned:
            live = self.live.get(run_id)
            if live is not None and not live.finished:
                log.warning(
                    "a run was taken over by another process; stopping it here", extra={"run_id": run_id}
                )
                self._in_background(self.cancel(run_id, "lost"))

    async def take_up(self) -> list[str]:
        """Claim the runs whose owner is gone and resume them, or end them, and on a shared
        store the queued runs this process has free slots for; returns their ids."""
        limit = None
        if self.store.shared:
            limit = self.settings.max_active_runs - self._unfinished
            if limit <= 0:
                return []
        claims = await self.store.claim(self.settings.lease_s, limit=limit)
        for claim in claims:
            if claim.run.id in self.live:  # this process is still letting it go: next round
                await self.store.release([claim.run.id])
                continue
            try:
                await self._take_up(claim)
            except Exception:  # storage trouble (or a bug): give it back for the next round
                log.exception("could not take up a run; it is tried again", extra={"run_id": claim.run.id})
                await self.store.release([claim.run.id])
        gone = [c.run.id for c in claims if c.resumes or c.run.status != "queued"]
        if gone:
            log.warning(
                "took up runs of a process that is gone",
                extra={"runs": gone, "resume": self.settings.resume_runs},
            )
        return [c.run.id for c in claims]

    async def _take_up(self, claim: Claim) -> None:
        s = self.settings
        record = claim.run
        run_id = record.id
        entries = await self.store.calls(run_id)
        last = await self.store.last_event_id(run_id)
        if claim.cancel_requested:
            return await self._end_unfinished(run_id, last, entries, "cancelled", None)
        # A run that never started (queued for a slot, or its process died first) just starts.
        fresh = record.status == "queued" and last == 0 and not entries
        if not fresh and not s.resume_runs:
            return await self._end_unfinished(run_id, last, entries, "interrupted", None)
        if not fresh and claim.resumes > s.max_resumes:
            error = RunError(
                kind="crash_loop",
                message=f"the run's process died {claim.resumes} times; it is not resumed again "
                f"(MAX_RESUMES={s.max_resumes})",
                node=None,
            )
            return await self._end_unfinished(run_id, last, entries, "failed", error)
        try:
            request = ReasonRequest.model_validate(record.request)
            count = await self.backend.counter.count(request.question)
            admitted = time.monotonic()
            ctx = self._admit(request, count, admitted, record.completion_budget)
        except (ValidationError, RunServiceError) as exc:
            message = exc.message if isinstance(exc, RunServiceError) else "its stored request is invalid"
            error = RunError(kind="internal_error", message=f"cannot resume the run: {message}", node=None)
            return await self._end_unfinished(run_id, last, entries, "failed", error)
        repeats = {key async for key in self._replay_keys(run_id)}
        live = self._live_run(run_id, base=last, repeats=repeats)
        self._unfinished += 1
        ctx = ctx.resuming(StoredCalls(self.store, run_id), entries)
        self._start(live, request, ctx, count, admitted, None if fresh else claim.resumes)

    async def _replay_keys(self, run_id: str) -> AsyncIterator[tuple[object, ...]]:
        after = 0
        while page := await self.store.events(run_id, after):
            for event in page:
                key = replay_key(event.event, event.data)
                if key is not None:
                    yield key
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].id

    async def _end_unfinished(
        self, run_id: str, last: int, entries: list[Entry], status: Status, error: RunError | None
    ) -> None:
        """End a run taken up from a process that is gone without running it again: its result
        accounts for the calls it made."""
        record = await self.store.get(run_id)
        question = record.question if record is not None else ""
        result = assemble(
            run_id=run_id,
            question=question,
            state=None,
            calls=[e.row for e in entries],
            question_tokens=0,
            question_exact=False,
            total_ms=0.0,
            error=error,
            status=None if error is not None else "cancelled",
            prices=self.prices,
        )
        event = Event(
            last + 1, run_id, TERMINAL_EVENT[status], RunEnded(run_id=run_id, result=result, error=error)
        )
        await self.store.finish(run_id, status, result, event)
        self.broker.changed(run_id)
        self.metrics.run_ended(status, result, self.prices)
