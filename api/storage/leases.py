"""A process's own view of its leases and of its contact with the store, by its monotonic clock.

The store times leases by its clock (the database's, or the SQLite file's machine's); a
process cannot ask it before every model call. So it keeps, for each lease it holds, a local
deadline: the moment it sent the request that took or last renewed the lease, plus the lease,
less a margin. The store set the lease's end no earlier than that request arrived, so until
the deadline the lease surely holds, however long the process was frozen or cut off since.
Past it, the process makes no model call for the run (fencing by lease deadlines: another
process may own the run by then).

A process that lost the store itself cannot tell a live owner that was cut off as it was from
one that died: after an outage it claims no other process's expired lease until it has been
back for a full lease plus the time an owner needs to reach the store again. Owners renew as
soon as they reach it (and their queued writes commit first), so they keep their runs.
"""

import time
from collections.abc import Callable, Iterable

LEASE_MARGIN = 0.2
"""The part of a lease a process does not count on: the time between its check and the
request reaching the backend, a store whose clock runs fast."""

RECONNECT_S = 2.0
"""How soon a process reaches its store again once the store is back: its Postgres pool starts
its reconnect attempts over after this long (psycopg_pool backs off for up to 5 minutes by
default), and its writer retries at least this often (``api.storage.batch_writer.RETRY_MAX_S``)."""


class LocalLeases:
    """The leases this process holds: ``taken`` (by a create or a claim), ``renewed``,
    ``dropped`` (finished or given up); ``holds`` says whether one surely holds now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, tuple[float, float]] = {}
        """Run id -> (local deadline, when the take was known to have happened)."""

    def taken(self, run_ids: Iterable[str], sent: float, lease_s: float) -> None:
        """A create or claim sent at ``sent`` (this clock) gave this process these leases: it
        is known now (committed, or queued ahead of any later renewal)."""
        known = max(sent, self.clock())
        for run_id in run_ids:
            self._until[run_id] = (self._deadline(sent, lease_s), known)

    def renewed(self, run_ids: Iterable[str], sent: float, lease_s: float) -> None:
        """A renewal sent at ``sent`` extended the leases of ``run_ids``: every other lease
        known to be taken before it was sent is lost (another process has it, or the run has
        ended). A take still in flight when it was sent may not be in its answer: it keeps the
        deadline it came with."""
        owned = set(run_ids)
        deadline = self._deadline(sent, lease_s)
        for run_id, (until, known) in list(self._until.items()):
            if run_id in owned:
                self._until[run_id] = (max(until, deadline), known)
            elif known < sent:
                del self._until[run_id]

    def dropped(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._until.pop(run_id, None)

    def holds(self, run_id: str) -> bool:
        until = self._until.get(run_id)
        return until is not None and self.clock() < until[0]

    @staticmethod
    def _deadline(sent: float, lease_s: float) -> float:
        return sent + lease_s * (1 - LEASE_MARGIN)


class StoreContact:
    """Whether this process has reached its store steadily for long enough to claim another
    process's expired lease: ``reached`` after every operation that worked, ``lost`` after one
    that failed for want of the store. A process that just started counts as just back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._back_since: float | None = clock()

    def reached(self) -> None:
        if self._back_since is None:
            self._back_since = self.clock()

    def lost(self) -> None:
        self._back_since = None

    def may_claim_expired(self, lease_s: float) -> bool:
        """Back for ``lease_s`` + ``RECONNECT_S``: any owner alive and cut off as this process
        was has had a full lease, after reaching the store again, to renew."""
        since = self._back_since
        return since is not None and self.clock() - since >= lease_s + RECONNECT_S
