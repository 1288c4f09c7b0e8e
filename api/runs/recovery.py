"""Taking up the unfinished runs of processes that are gone, and on a shared store the runs
that wait for a free slot.

A run taken up is resumed from its checkpoints (``RESUME_RUNS``), with the replay keys of the
events it already logged so it does not log them again; or stored as interrupted; or as failed
once it has been resumed ``MAX_RESUMES`` times. A run that never started just starts."""

import logging
import time
from datetime import datetime

from pydantic import ValidationError

from api.runs.admission import Admission
from api.runs.errors import RunServiceError
from api.runs.registry import Registry
from api.runs.request import ReasonRequest
from api.runs.worker import TERMINAL_EVENT, Job, StoredCalls, Worker
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import REPLAY_PAGE, Claim, Event, RunStore, Status
from graph import RunError, TokenCounter
from graph.events import RUN_RESUMED, RunEnded, replay_key
from graph.journal import Entry
from graph.result import RunClock, assemble, busy_ms

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        broker: Broker,
        registry: Registry,
        worker: Worker,
        admission: Admission,
        counter: TokenCounter,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.registry = registry
        self.worker = worker
        self.admission = admission
        self.counter = counter

    async def take_up(self) -> list[str]:
        """Claim the runs whose owner is gone and resume them, or end them, and on a shared
        store the queued runs this process has free slots for; returns their ids."""
        limit = None
        if self.store.shared:
            limit = self.registry.free
            if limit <= 0:
                return []
        claims = await self.store.claim(self.settings.lease_s, limit=limit)
        for claim in claims:
            if claim.run.id in self.registry.live:  # this process is still letting it go: next round
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
            return await self._end(run_id, last, entries, "cancelled", None)
        # A run that never started (queued for a slot, or its process died first) just starts.
        fresh = record.status == "queued" and last == 0 and not entries
        if not fresh and not s.resume_runs:
            return await self._end(run_id, last, entries, "interrupted", None)
        if not fresh and claim.resumes > s.max_resumes:
            error = RunError(
                kind="crash_loop",
                message=f"the run's process died {claim.resumes} times; it is not resumed again "
                f"(MAX_RESUMES={s.max_resumes})",
                node=None,
            )
            return await self._end(run_id, last, entries, "failed", error)
        try:
            request = ReasonRequest.model_validate(record.request)
            count = await self.counter.count(request.question)
            admitted = time.monotonic()
            ctx = self.admission.admit(
                request, count, now=admitted, completion_budget=record.completion_budget
            )
        except (ValidationError, RunServiceError) as exc:
            message = exc.message if isinstance(exc, RunServiceError) else "its stored request is invalid"
            error = RunError(kind="internal_error", message=f"cannot resume the run: {message}", node=None)
            return await self._end(run_id, last, entries, "failed", error)
        repeats, seams = await self._logged(run_id)
        live = self.worker.live_run(run_id, base=last, repeats=repeats)
        self.registry.hold()
        ctx = ctx.resuming(StoredCalls(self.store, run_id), entries)
        resumes = None if fresh else claim.resumes
        self.worker.start(Job(live, request, ctx, count, admitted, record.created_at, resumes, seams))

    async def _logged(self, run_id: str) -> tuple[set[tuple[object, ...]], int]:
        """The replay keys of the events in the run's log, and how many seams (``run.resumed``)
        it has."""
        keys: set[tuple[object, ...]] = set()
        seams = 0
        after = 0
        while page := await self.store.events(run_id, after):
            for event in page:
                key = replay_key(event.event, event.data)
                if key is not None:
                    keys.add(key)
                seams += event.event == RUN_RESUMED
            if len(page) < REPLAY_PAGE:
                break
            after = page[-1].id
        return keys, seams

    async def cancel_unowned(self, run_id: str) -> bool:
        """End a run nobody runs (queued, or its replica is gone) as cancelled, if this process
        can claim it; False if it cannot (another replica runs it, or it has finished)."""
        if not await self.store.claim(self.settings.lease_s, run_id=run_id):
            return False
        entries = await self.store.calls(run_id)
        last = await self.store.last_event_id(run_id)
        await self._end(run_id, last, entries, "cancelled", None)
        return True

    async def _end(
        self, run_id: str, last: int, entries: list[Entry], status: Status, error: RunError | None
    ) -> None:
        """End a run taken up from a process that is gone without running it again: its result
        accounts for the calls it made."""
        record = await self.store.get(run_id)
        question = record.question if record is not None else ""
        rows = [e.row for e in entries]
        clock = RunClock(
            created_at=datetime.fromisoformat(record.created_at) if record is not None else None,
            earlier_active_ms=busy_ms(rows),
            resumes=(await self._logged(run_id))[1],
        )
        result = assemble(
            run_id=run_id,
            question=question,
            state=None,
            calls=rows,
            question_tokens=0,
            question_exact=False,
            execution_ms=0.0,
            error=error,
            clock=clock,
            status=None if error is not None else "cancelled",
            prices=self.worker.prices,
        )
        event = Event(
            last + 1, run_id, TERMINAL_EVENT[status], RunEnded(run_id=run_id, result=result, error=error)
        )
        await self.store.finish(run_id, status, result, event)
        self.broker.changed(run_id)
        self.worker.metrics.run_ended(status, result, self.worker.prices)
