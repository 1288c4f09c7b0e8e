"""A process's own view of its leases, by its monotonic clock.

The store times leases by its clock (the database's, or the SQLite file's machine's); a
process cannot ask it before every model call. So it keeps, for each lease it holds, a local
deadline: the moment it sent the request that took or last renewed the lease, plus the lease,
less a margin. The store set the lease's end no earlier than that request arrived, so until
the deadline the lease surely holds, however long the process was frozen or cut off since.
Past it, the process makes no model call for the run (fencing by lease deadlines: another
process may own the run by then).
"""

import time
from collections.abc import Callable, Iterable

LEASE_MARGIN = 0.2
"""The part of a lease a process does not count on: the time between its check and the
request reaching the backend, a store whose clock runs fast."""


class LocalLeases:
    """The leases this process holds: ``taken`` (by a create or a claim), ``renewed``,
    ``dropped`` (finished or given up); ``holds`` says whether one surely holds now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, tuple[float, float]] = {}
        """Run id -> (local deadline, when the request that took the lease was sent)."""

    def taken(self, run_ids: Iterable[str], sent: float, lease_s: float) -> None:
        """A create or claim sent at ``sent`` (this clock) gave this process these leases."""
        for run_id in run_ids:
            self._until[run_id] = (self._deadline(sent, lease_s), sent)

    def renewed(self, run_ids: Iterable[str], sent: float, lease_s: float) -> None:
        """A renewal sent at ``sent`` extended the leases of ``run_ids``: every other lease
        taken before it was sent is lost (another process has it, or the run has ended)."""
        owned = set(run_ids)
        deadline = self._deadline(sent, lease_s)
        for run_id, (until, taken) in list(self._until.items()):
            if run_id in owned:
                self._until[run_id] = (max(until, deadline), taken)
            elif taken < sent:
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
