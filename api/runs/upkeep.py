"""This process's upkeep, in the background while it lives: renewing its leases, stopping its
runs that another process took over or that a caller cancelled on another replica, taking up
runs (``api.runs.recovery``), and applying the retention.

On a shared store (Postgres) every replica's upkeep claims waiting runs for its free slots:
each second, or at once when the broker wakes it or a slot frees here (``poke``)."""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from api.runs.recovery import Recovery
from api.runs.registry import Registry
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import RunStore

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0
TICK_S = 1.0
"""On a shared store without a broker (no Redis, or Redis lost), how often a replica looks in the
store for queued runs and cancel requests; with one, it is woken at once, and looks there only
when it renews its leases."""


class Upkeep:
    def __init__(
        self, settings: Settings, store: RunStore, broker: Broker, registry: Registry, recovery: Recovery
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.registry = registry
        self.recovery = recovery
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._pruned = -RETENTION_EVERY_S

    def poke(self) -> None:
        """Look for runs to take up now (a run was queued, or a slot freed)."""
        if self.store.shared:
            self._poked.set()

    def start(self, take_up: bool) -> None:
        """Keep the leases and, with ``take_up``, take up runs and apply the retention."""
        self._task = asyncio.create_task(self._keep_up(take_up), name="runner-upkeep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _keep_up(self, take_up: bool) -> None:
        every = self.settings.lease_s / 3
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
                        self.registry.cancel_if_here(run_id)
                if not take_up:
                    continue
                if self.registry.accepting:
                    await self.recovery.take_up()
                await self._prune()
            except Exception:  # storage trouble (or a bug): the next round tries again
                log.exception("the runner's upkeep failed; retrying")

    async def _renew(self) -> None:
        """Keep this process's leases; stop (without a word to the store) the runs it no longer
        owns: it was held up past a lease, and another process has taken them over."""
        before = set(self.registry.live)  # stored before the renewal: a later run cannot look lost
        owned = await self.store.renew(self.settings.lease_s)
        for run_id in before - owned:
            live = self.registry.get(run_id)
            if live is not None and not live.finished:
                log.warning(
                    "a run was taken over by another process; stopping it here", extra={"run_id": run_id}
                )
                self.registry.cancel_later(run_id, "lost")

    async def _prune(self) -> None:
        """Delete the runs older than RETENTION_DAYS, once every ``RETENTION_EVERY_S``."""
        days = self.settings.retention_days
        if days is None or time.monotonic() - self._pruned < RETENTION_EVERY_S:
            return
        self._pruned = time.monotonic()
        cutoff = datetime.now(UTC) - timedelta(days=days)
        deleted = await self.store.delete_before(cutoff.isoformat(timespec="microseconds"))
        if deleted:
            log.info("deleted old runs", extra={"runs": deleted})
