"""The lifecycle of runs in this process: submit, start, shut down, and cancel wherever a run is.

A submitted run is stored, then executed in a background task (``api.runs.worker``). Runs
outlive their process: while it lives, this process renews its leases and takes up the
unfinished runs of processes that are gone (``api.runs.upkeep``, ``api.runs.recovery``). A
shutdown leaves the runs it cannot finish to resume.

On a shared store (Postgres) this process is one replica of several: a run it has no free slot
for waits in the store for any replica to claim, and a run another replica runs is cancelled
there, through the store and the broker.
"""

import asyncio
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from api.runs.admission import Admission
from api.runs.errors import Busy, Conflict, ShuttingDown
from api.runs.live import StopReason
from api.runs.lookup import RunLookup
from api.runs.quotas import allowance
from api.runs.recovery import Recovery
from api.runs.registry import Registry
from api.runs.request import ReasonRequest
from api.runs.tenants import Tenant
from api.runs.upkeep import Upkeep
from api.runs.worker import Job, StoredCalls, Worker
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import (
    TERMINAL,
    Grant,
    IdempotencyKey,
    IdempotencyKeyReused,
    RunStore,
    Spend,
    Status,
)
from graph import TokenCounter
from graph.journal import Journal

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """``run_`` and 24 hex digits: the milliseconds since the epoch, then 48 random bits. Ids in
    creation order keep the rows of the runs in flight together at the end of the events' and
    calls' indexes, so a commit rewrites a few pages, not a page per run."""
    return f"run_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Submitted:
    run_id: str
    replayed: bool = False
    """The Idempotency-Key named a run made earlier: this is that run."""


@dataclass(frozen=True)
class Runner:
    settings: Settings
    store: RunStore
    broker: Broker
    counter: TokenCounter
    admission: Admission
    registry: Registry
    worker: Worker
    recovery: Recovery
    upkeep: Upkeep
    lookup: RunLookup

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
        s, registry = self.settings, self.registry
        if not registry.accepting:
            raise ShuttingDown
        here = not self.store.shared or registry.active < s.max_active_runs
        if here:
            full = registry.active >= s.max_active_runs + s.max_queued_runs
        else:
            full = await self.store.queued() >= s.max_queued_runs
        if full:
            raise Busy("too many runs in progress; retry later", code="too_many_runs", retry_after_s=5)
        registry.hold()  # from here, so concurrent submissions see it
        try:
            count = await self.counter.count(request.question)
            admitted = time.monotonic()
            ctx = self.admission.admit(request, count, now=admitted, completion_budget=completion_budget)
            grant: Grant | None = None
            if tenant is not None and tenant.limits.any:
                limits = tenant.limits

                def grant(spend: Spend) -> dict[str, Any]:
                    """In the store's transaction: the run within what is left of the quotas."""
                    nonlocal ctx
                    quota = allowance(limits, spend)
                    ctx = self.admission.admit(
                        request, count, now=admitted, completion_budget=completion_budget, quota=quota
                    )
                    return self.admission.granted(request, ctx).model_dump(exclude_none=True)

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
            registry.release()
            raise Conflict(
                "this Idempotency-Key was used with another request; use a new key for a new request",
                code="idempotency_key_reused",
            ) from None
        except BaseException:
            registry.release()
            raise
        if record.id != run_id or not here:  # an earlier run of the same key, or left for any replica
            registry.release()
            if record.id == run_id:
                self.broker.wake()
            return Submitted(record.id, replayed=record.id != run_id)
        ctx = dataclasses.replace(ctx, journal=Journal(StoredCalls(self.store, run_id)))
        self.worker.start(Job(self.worker.live_run(run_id), request, ctx, count, admitted, record.created_at))
        return Submitted(run_id)

    async def cancel_anywhere(self, run_id: str) -> Status:
        """Stop the run wherever it runs; its status once stopped. Here, at once; on a shared
        store, a run nobody runs (queued, or its replica is gone) is ended at once, and one that
        another replica runs is stopped there, waited on for up to ``SETTLE_S`` to show it ended.
        Conflict if it has finished, or runs in another process this one cannot reach."""
        elsewhere = run_id not in self.registry.live and self.store.shared
        if elsewhere and (await self.recovery.cancel_unowned(run_id) or await self._ask_owner(run_id)):
            return (await self.lookup.settled(run_id)).status
        if not await self.registry.cancel(run_id):
            current = (await self.lookup.get(run_id)).status
            if current in TERMINAL:
                raise Conflict(f"run {run_id} has already finished ({current})", code="run_finished")
            raise Conflict(
                f"run {run_id} is {current} in another process on this store; cancel it there, or "
                "retry once this process has taken it up",
                code="run_elsewhere",
            )
        return (await self.lookup.get(run_id)).status

    async def _ask_owner(self, run_id: str) -> bool:
        """Ask the replica that runs it to stop it; False if it has finished."""
        if not await self.store.request_cancel(run_id):
            return False
        self.broker.cancel(run_id)
        return True

    async def start(self, *, take_up: bool = True) -> None:
        """Keep this process's leases in the background and, with ``take_up``, take up what
        processes that are gone left unfinished (now, and as long as it runs), and apply the
        retention."""
        if take_up:
            await self.recovery.take_up()
        self.upkeep.start(take_up)

    async def shutdown(self, grace_s: float, *, leave_to_resume: bool | None = None) -> None:
        """Refuse new runs and give in-flight runs ``grace_s`` to finish. The rest are left to
        resume in the next process (by default where ``RESUME_RUNS``) or stored as interrupted.
        Then commit what is queued."""
        registry = self.registry
        registry.accepting = False  # the upkeep goes on renewing the leases, but takes nothing up
        tasks = {live.task for live in registry.live.values() if live.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            resume = self.settings.resume_runs if leave_to_resume is None else leave_to_resume
            reason: StopReason = "suspended" if resume else "interrupted"
            left = [live.run_id for live in registry.live.values() if live.task in pending]
            for run_id in left:
                await registry.cancel(run_id, reason)
            if reason == "suspended":
                await self.store.release(left)
                self.broker.wake()  # another replica may take them up at once
                log.warning("runs left to resume in the next process", extra={"runs": left})
        await self.upkeep.stop()
        await registry.settle(timeout_s=5)
