"""LangGraph's checkpointer, made best-effort for writes: a checkpoint that cannot be written
(disk full, database locked) does not fail the run. The run goes on; if its process then dies,
it resumes from an earlier checkpoint, and the call journal still spares the calls that had
returned. Reads fail as they do (a run that cannot read its checkpoint cannot resume).

A run's writes can also be held in memory until it ends (``hold``, ``release``): with
CHECKPOINT_DURABILITY=exit the only checkpoint is the one LangGraph writes as the graph ends, which
a finished run deletes at once; it is written only for a run that will be resumed."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

log = logging.getLogger(__name__)

FAILURE_LOG_EVERY_S = 30.0
PAUSE_S = 5.0
"""After a failed write, checkpoints are not attempted for this long: runs do not queue up
behind a database that cannot take them (each attempt waits for its lock)."""


class BestEffortSaver(BaseCheckpointSaver[str]):
    def __init__(
        self,
        saver: BaseCheckpointSaver[str],
        write_errors: tuple[type[Exception], ...],
        after_failure: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``after_failure`` puts the saver's connection back in order after a failed write
        (SQLite: roll back what the failed statement left open)."""
        super().__init__(serde=saver.serde)
        self.saver = saver
        self.write_errors = write_errors
        self.after_failure = after_failure
        self.failures = 0
        self._last_log = -FAILURE_LOG_EVERY_S
        self._paused_until = 0.0
        self._writing = asyncio.Lock()
        """Writes wait here, not in the saver: once one fails, those behind it see the pause."""
        self._held: dict[str, list[Callable[[], Awaitable[object]]]] = {}
        self._unwritten: set[str] = set()
        """Threads with nothing stored: reading them finds nothing and deleting them is a no-op,
        not a write transaction that takes the database's write lock from the run store's writer."""

    def hold(self, thread_id: str, *, fresh: bool) -> None:
        """Keep the thread's writes in memory from now until ``release`` (``fresh``: no earlier
        process has stored any)."""
        self._held[thread_id] = []
        if fresh:
            self._unwritten.add(thread_id)

    async def release(self, thread_id: str, *, keep: bool) -> None:
        """Write what was held for the thread (``keep``), or forget it."""
        held = self._held.pop(thread_id, [])
        if keep:
            self._unwritten.discard(thread_id)
            for write in held:
                await write()

    def _holding(self, config: RunnableConfig) -> list[Callable[[], Awaitable[object]]] | None:
        return self._held.get(_thread(config))

    def _paused(self) -> bool:
        if time.monotonic() < self._paused_until:
            self.failures += 1
            return True
        return False

    async def _failed(self, exc: Exception) -> None:
        if self.after_failure is not None:
            with contextlib.suppress(*self.write_errors):
                await self.after_failure()
        self.failures += 1
        now = time.monotonic()
        self._paused_until = now + PAUSE_S
        if now - self._last_log >= FAILURE_LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "a checkpoint could not be written; the run goes on without it",
                extra={"error": str(exc), "failures": self.failures},
            )

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if self._holding(config) is not None and _thread(config) in self._unwritten:
            return None  # a fresh run: nothing to read, and no trip to the database's thread
        return await self.saver.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.saver.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        held = self._holding(config)
        if held is not None:
            held.append(lambda: self._put(config, checkpoint, metadata, new_versions))
            return _written(config, checkpoint)
        return await self._put(config, checkpoint, metadata, new_versions)

    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        async with self._writing:
            try:
                if not self._paused():
                    return await self.saver.aput(config, checkpoint, metadata, new_versions)
            except self.write_errors as exc:
                await self._failed(exc)
        return _written(config, checkpoint)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        held = self._holding(config)
        if held is not None:
            held.append(lambda: self._put_writes(config, writes, task_id, task_path))
            return
        await self._put_writes(config, writes, task_id, task_path)

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        async with self._writing:
            if self._paused():
                return
            try:
                await self.saver.aput_writes(config, writes, task_id, task_path)
            except self.write_errors as exc:
                await self._failed(exc)

    async def adelete_thread(self, thread_id: str) -> None:
        if thread_id in self._unwritten:
            self._unwritten.discard(thread_id)
            return
        await self.saver.adelete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.saver.aget_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return self.saver.get_next_version(current, channel)


def _written(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    """The config that points at ``checkpoint``, as the saver returns it once written."""
    configurable = config.get("configurable", {})
    return {
        "configurable": {
            "thread_id": configurable.get("thread_id"),
            "checkpoint_ns": configurable.get("checkpoint_ns", ""),
            "checkpoint_id": checkpoint["id"],
        }
    }


def _thread(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", ""))
