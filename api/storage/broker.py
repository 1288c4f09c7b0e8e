"""What crosses between replicas besides the store: a run's new events, a queued run, a cancel.

The store holds the truth; the broker only carries wake-ups. A replica that commits a run's
events says so (``changed``); followers of that run on any replica are woken and read the new
events from the store, so a lost message costs latency, never an event. ``wake`` tells every
replica that a run waits for a free slot; ``cancel`` asks the run's owner to stop it.

``Broker`` is the one-process case (no Redis): nothing crosses, and whoever follows a run of
another process reads the store every ``POLL_S``. ``RedisBroker`` carries the wake-ups over
Redis pub/sub, every channel under the deployment's prefix; while Redis is unreachable it
reconnects in the background and followers poll, as without it.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

POLL_S = 0.5
"""How often a follower reads the store when no broker wakes it."""
RECONNECT_MAX_S = 2.0
PING_TIMEOUT_S = 1.0


class Watch:
    """Wakes one follower of one run."""

    def __init__(self, broker: "Broker") -> None:
        self._broker = broker
        self._flag = asyncio.Event()

    def set(self) -> None:
        self._flag.set()

    async def wait(self, timeout_s: float) -> None:
        """Until the run changed (since the last wait), or at most ``timeout_s``; at most
        ``POLL_S`` while no broker carries changes."""
        if not self._broker.connected:
            timeout_s = min(timeout_s, POLL_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flag.wait(), timeout_s)
        self._flag.clear()


class Broker:
    connected = False
    """Whether changes of other replicas reach this one now."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}
        self.on_wake: Callable[[], None] = lambda: None
        self.on_cancel: Callable[[str], None] = lambda run_id: None

    @contextlib.contextmanager
    def watch(self, run_id: str) -> Iterator[Watch]:
        """Be woken when the run changes, on any replica."""
        watch = Watch(self)
        self._watches.setdefault(run_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches[run_id]
            watches.discard(watch)
            if not watches:
                del self._watches[run_id]

    def _changed_here(self, run_id: str) -> None:
        for watch in self._watches.get(run_id, ()):
            watch.set()

    def _wake_all_watches(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.set()

    def changed(self, run_id: str) -> None:
        """The run's new events (or its end) are committed."""
        self._changed_here(run_id)

    def wake(self) -> None:
        """A run waits in the store for a free slot."""

    def cancel(self, run_id: str) -> None:
        """Ask the replica that runs ``run_id`` to stop it."""

    async def start(self) -> None:
        """Start carrying messages (``on_wake``, ``on_cancel`` are set by then)."""

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Stop carrying messages."""


class RedisBroker(Broker):
    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT_S)
        self._events = f"{prefix}:events"
        self._wake = f"{prefix}:wake"
        self._cancel = f"{prefix}:cancel"
        self._outbox: list[tuple[str, str]] = []
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = False

    def _send(self, channel: str, message: str) -> None:
        self._outbox.append((channel, message))
        self._ready.set()

    def changed(self, run_id: str) -> None:
        self._send(self._events, run_id)

    def wake(self) -> None:
        self._send(self._wake, "")

    def cancel(self, run_id: str) -> None:
        self._send(self._cancel, run_id)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish(), name="broker-publish"),
            asyncio.create_task(self._listen(), name="broker-listen"),
        ]

    async def _publish(self) -> None:
        """Send what is queued, each message once per batch; what cannot be sent is dropped
        (followers read the store at least every ``POLL_S`` while Redis is away)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._outbox = list(dict.fromkeys(self._outbox)), []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._lost(exc)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._events, self._wake, self._cancel)
                    self._found()
                    delay = 0.05
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            self._deliver(message["channel"].decode(), message["data"].decode())
            except (RedisError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    def _deliver(self, channel: str, data: str) -> None:
        if channel == self._events:
            self._changed_here(data)
        elif channel == self._wake:
            self.on_wake()
        elif channel == self._cancel:
            self.on_cancel(data)

    def _found(self) -> None:
        if self._warned:
            log.warning("Redis is back: live events cross replicas again")
        self.connected, self._warned = True, False
        self._wake_all_watches()  # what was missed while away is in the store
        self.on_wake()

    def _lost(self, exc: Exception) -> None:
        if not self._warned:
            log.error("Redis is unreachable: followers poll the store", extra={"error": str(exc)})
            self._warned = True
        if self.connected:
            self.connected = False
            self._wake_all_watches()  # to poll from now on

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(cast(Awaitable[bool], self._redis.ping()), PING_TIMEOUT_S))
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
