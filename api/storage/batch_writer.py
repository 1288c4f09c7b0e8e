"""The one writer of a run store: writes queued by many runs are committed in order by one task,
the ones ready together (within GATHER_S) in one transaction. A batch that fails on a storage
error is retried (with backoff) until it sticks, so nothing admitted is lost to a passing fault;
one that fails otherwise (a bug) is logged and dropped, so the writer goes on."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]

GATHER_S = 0.005
"""A batch nobody waits on (events, ledger rows, status) waits this long for more before it is
committed: each commit rewrites every page it touches, so fewer, fuller commits write less. A
batch with a write someone awaits (a run's creation, its end) is committed at once."""
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
FAILURE_LOG_EVERY_S = 30.0
"""A write that keeps failing is logged at most this often."""


@dataclass
class _Write:
    statements: list[Statement]
    done: asyncio.Future[None] | None = None
    committed: Callable[[], None] | None = None


class BatchWriter:
    """``commit`` runs one batch of statements in one transaction; ``retryable`` are the
    storage errors it may raise."""

    def __init__(
        self,
        commit: Callable[[list[Statement]], Awaitable[None]],
        retryable: tuple[type[Exception], ...],
    ) -> None:
        self.commit = commit
        self.retryable = retryable
        self.healthy = True
        """False while batches keep failing; true again once one commits."""
        self._writes: list[_Write] = []
        self._ready = asyncio.Event()
        self._awaited = asyncio.Event()
        """Set while a queued write is awaited: its batch is committed without gathering."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._last_failure_log = -FAILURE_LOG_EVERY_S

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="store-writer")

    @property
    def pending(self) -> int:
        return len(self._writes)

    def enqueue(
        self,
        statements: list[Statement],
        *,
        wait: bool = False,
        committed: Callable[[], None] | None = None,
    ) -> asyncio.Future[None] | None:
        """Queue a write; with ``wait``, a future resolved once it is committed; ``committed``
        is called then."""
        done = asyncio.get_running_loop().create_future() if wait else None
        self._writes.append(_Write(statements, done, committed))
        self._idle.clear()
        self._ready.set()
        if wait:
            self._awaited.set()
        return done

    async def write(self, statements: list[Statement]) -> None:
        """Queue a write and wait until it is committed."""
        done = self.enqueue(statements, wait=True)
        assert done is not None
        await asyncio.shield(done)

    def failed(self, exc: Exception, size: int) -> None:
        """Note a storage failure (also one of a write made outside the queue)."""
        self.healthy = False
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.error(
                "the run store cannot write; retrying",
                extra={"error": str(exc), "queued_writes": size + len(self._writes)},
            )

    async def _loop(self) -> None:
        while True:
            await self._ready.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._awaited.wait(), GATHER_S)
            self._ready.clear()
            self._awaited.clear()
            batch, self._writes = self._writes, []
            statements = [s for w in batch for s in w.statements]
            delay = RETRY_FIRST_S
            while True:
                try:
                    await self.commit(statements)
                    break
                except self.retryable as exc:
                    self.failed(exc, len(batch))
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                except Exception:  # a bug: retrying cannot help, and the writer must go on
                    log.exception(
                        "the run store dropped a batch it cannot write", extra={"writes": len(batch)}
                    )
                    break
            if not self.healthy:
                log.warning("the run store accepts writes again")
                self._last_failure_log = -FAILURE_LOG_EVERY_S
            self.healthy = True
            for write in batch:
                if write.done is not None and not write.done.done():
                    write.done.set_result(None)
                if write.committed is not None:
                    write.committed()
            if not self._writes:
                self._idle.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every write queued so far is committed; False if some are not in time."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float) -> None:
        """Commit what is queued (for at most ``timeout_s``; what is left is logged) and stop."""
        if self._task is None:
            return
        if not await self.flush(timeout_s):
            log.error("the run store closed with writes it could not commit", extra={"writes": self.pending})
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
