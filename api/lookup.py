"""Finding runs: live ones in memory, the rest in the store. Used by every route that reads."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from api.live import LiveRun
from api.runner import Runner
from api.store import REPLAY_PAGE, Event, RunNotFound, RunRecord
from graph import Result


class RunLookup:
    def __init__(self, runner: Runner, heartbeat_s: float) -> None:
        self.runner = runner
        self.store = runner.store
        self.heartbeat_s = heartbeat_s
        self.followers = 0
        self._unfollowed = asyncio.Event()
        self._unfollowed.set()

    def _live(self, run_id: str) -> LiveRun | None:
        return self.runner.live.get(run_id)

    async def get(self, run_id: str) -> RunRecord:
        """The stored run, with the live state of a run of this process (its final state may
        not be committed yet)."""
        live = self._live(run_id)  # before the read: the run may leave memory while it waits
        record = await self.store.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        if live is None:
            return record
        result = live.result.result() if live.result.done() else None
        return dataclasses.replace(record, status=live.status, result=result or record.result)

    async def wait(self, run_id: str) -> Result:
        """The run's result, once it has one."""
        live = self._live(run_id)
        if live is not None:
            return await asyncio.shield(live.result)
        record = await self.get(run_id)
        if record.result is None:
            raise RunNotFound(run_id)
        return record.result

    async def last_event_id(self, run_id: str) -> int:
        live = self._live(run_id)
        if live is not None:
            return len(live.events)
        return await self.store.last_event_id(run_id)

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[Event | None]:
        """Replay the run's events after ``after``, then follow it live until it ends.

        Yields None (a heartbeat) whenever a live run was quiet for the heartbeat interval. A
        finished run is replayed from the store a page at a time.
        """
        self.followers += 1
        self._unfollowed.clear()
        try:
            live = self._live(run_id)
            if live is not None:
                async for event in live.follow(after, self.heartbeat_s):
                    yield event
                return
            while True:
                page = await self.store.events(run_id, after)
                for event in page:
                    yield event
                if len(page) < REPLAY_PAGE:
                    return
                after = page[-1].id
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
