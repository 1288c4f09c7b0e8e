"""This process's runs: the live ones, the slots they hold, how they are stopped, and the work
they leave in the background (final states to commit, leases to give back).

A run holds a slot from its admission until it ends (``hold``/``release``), and stays live
until its final state is committed or it is let go (``add``/``forget``). MAX_ACTIVE_RUNS bounds
the slots held here."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from api.runs.live import LiveRun, StopReason


class Registry:
    def __init__(self, max_active: int) -> None:
        self.max_active = max_active
        self.accepting = True
        """False once the process shuts down: no new runs, nothing taken up."""
        self.live: dict[str, LiveRun] = {}
        """Runs of this process until their final state is committed."""
        self.on_free: Callable[[], None] = lambda: None
        """Called when a run has left: its slot is free for another."""
        self._held = 0
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> int:
        """Runs admitted and not finished yet (executing or queued)."""
        return self._held

    @property
    def free(self) -> int:
        return self.max_active - self._held

    def hold(self) -> None:
        """A run takes a slot (at its admission, or when it is taken up)."""
        self._held += 1

    def release(self) -> None:
        """A run gives its slot back (it ended, was let go, or was never stored)."""
        self._held -= 1

    def get(self, run_id: str) -> LiveRun | None:
        return self.live.get(run_id)

    def add(self, live: LiveRun) -> None:
        self.live[live.run_id] = live

    def forget(self, live: LiveRun) -> None:
        """The run has left this process."""
        if self.live.get(live.run_id) is live:  # not a later LiveRun of the same run
            del self.live[live.run_id]
        self.on_free()

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

    def cancel_later(self, run_id: str, reason: StopReason = "cancelled") -> None:
        """Cancel from a place that cannot wait (a stream's cleanup, a broker's message)."""
        self.in_background(self.cancel(run_id, reason))

    def cancel_if_here(self, run_id: str) -> None:
        if run_id in self.live:
            self.cancel_later(run_id)

    def in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, timeout_s: float) -> None:
        """Wait, up to ``timeout_s``, for the work left in the background."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)
