"""Finding runs: live ones in memory, the rest in the store. Used by every route that reads.

A run that is unfinished but not live here (another replica runs it, or it waits to be taken
up) is followed and waited on by reading the store whenever the broker says it changed (at
once, through Redis), or every ``POLL_S`` without one, until it ends or this process takes it
up."""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from api.runs.live import LiveRun
from api.runs.registry import Registry
from api.runs.tenants import Caller
from api.storage.broker import Broker
from api.storage.interface import REPLAY_PAGE, TERMINAL, Event, RunNotFound, RunRecord, RunStore
from graph import Result

SETTLE_S = 5.0
"""How long a cancel of a run on another replica waits to see it end."""


class RunLookup:
    def __init__(self, registry: Registry, store: RunStore, broker: Broker, heartbeat_s: float) -> None:
        self.registry = registry
        self.store = store
        self.broker = broker
        self.heartbeat_s = heartbeat_s
        self.followers = 0
        self._unfollowed = asyncio.Event()
        self._unfollowed.set()

    def _live(self, run_id: str) -> LiveRun | None:
        return self.registry.get(run_id)

    async def get(self, run_id: str, caller: Caller | None = None) -> RunRecord:
        """The stored run, with the live state of a run of this process (its final state may
        not be committed yet). With ``caller``, a run that is not theirs to see is not found:
        run ids cannot be probed."""
        live = self._live(run_id)  # before the read: the run may leave memory while it waits
        record = await self.store.get(run_id)
        if record is None or (caller is not None and not caller.may_see(record.key_hash)):
            raise RunNotFound(run_id)
        if live is None:
            return record
        done = live.result.done() and live.result.exception() is None  # not let go meanwhile
        result = live.result.result() if done else None
        return dataclasses.replace(record, status=live.status, result=result or record.result)

    async def wait(self, run_id: str) -> Result:
        """The run's result, once it has one."""
        with self.broker.watch(run_id) as watch:
            while True:
                live = self._live(run_id)
                if live is not None:
                    return await asyncio.shield(live.result)
                record = await self.get(run_id)
                if record.status in TERMINAL:
                    if record.result is None:
                        raise RunNotFound(run_id)
                    return record.result
                await watch.wait(self.heartbeat_s)

    async def settled(self, run_id: str, timeout_s: float = SETTLE_S) -> RunRecord:
        """The run once it has ended, or as it is after ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(run_id), timeout_s)
        return await self.get(run_id)

    async def last_event_id(self, run_id: str) -> int:
        live = self._live(run_id)
        if live is not None:
            return live.last_event_id
        return await self.store.last_event_id(run_id)

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[Event | None]:
        """Replay the run's events after ``after``, then follow it live until it ends.

        Yields None (a heartbeat) whenever the run was quiet for the heartbeat interval. A
        finished run is replayed from the store a page at a time; a resumed one from the store
        up to its seam, then live.
        """
        self.followers += 1
        self._unfollowed.clear()
        clock = asyncio.get_running_loop().time
        try:
            with self.broker.watch(run_id) as watch:
                quiet_since = clock()
                while True:
                    live = self._live(run_id)
                    if live is not None and after >= live.base:
                        async for event in live.follow(after, self.heartbeat_s):
                            yield event
                        return  # ended, or left to resume in the next process: the client reconnects
                    # The status first: once it is final, every event of the run is stored.
                    record = await self.store.get(run_id)
                    if record is None:
                        return
                    page = await self.store.events(run_id, after)
                    for event in page:
                        yield event
                    if page:
                        after, quiet_since = page[-1].id, clock()
                    if len(page) == REPLAY_PAGE or live is not None:
                        continue
                    if record.status in TERMINAL:
                        return
                    await watch.wait(quiet_since + self.heartbeat_s - clock())
                    if clock() - quiet_since >= self.heartbeat_s:
                        quiet_since = clock()
                        yield None
        finally:
            self.followers -= 1
            if not self.followers:
                self._unfollowed.set()

    async def streams_closed(self, timeout_s: float) -> bool:
        """Wait until no stream follows a run; False if some still do after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._unfollowed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
