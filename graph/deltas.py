"""A call's streamed text: forwarded once across its retries, and counted into the journal as it
streams (``graph.calls``)."""

from collections.abc import Callable

from graph.journal import Journal
from graph.ledger import CallRecord
from graph.tokens import estimate


class Deltas:
    """Forwards streamed text once: a retry that repeats what was already sent stays silent
    until it gets past it. A retry that says something else is not forwarded at all (what
    was sent cannot be taken back, and gluing two replies would make a third): the call's
    returned text is then the only whole reply."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        self.forward = forward
        self.sent = ""
        self.current = ""
        self.diverged = False

    def new_attempt(self) -> None:
        self.current = ""

    def __call__(self, piece: str) -> None:
        self.current += piece
        if self.diverged or self.sent.startswith(self.current):
            return
        if not self.current.startswith(self.sent):
            self.diverged = True
            return
        fresh, self.sent = self.current[len(self.sent) :], self.current
        self.forward(fresh)


PROGRESS_EVERY = 32
"""A streamed call's running count of completion tokens goes to the journal this often."""


class Streamed:
    """Passes a call's streamed text on and, every ``PROGRESS_EVERY`` tokens (counted locally),
    writes the call's in-flight row again with them: a call cut by a crash is counted up to there."""

    def __init__(
        self, forward: Callable[[str], None], seq: int, row: Callable[[int], CallRecord], journal: Journal
    ) -> None:
        self.forward = forward
        self.seq = seq
        self.row = row
        self.journal = journal
        self.tokens = 0
        self.reported = 0

    def __call__(self, piece: str) -> None:
        self.forward(piece)
        self.tokens += estimate(piece)
        if self.tokens - self.reported >= PROGRESS_EVERY:
            self.reported = self.tokens
            self.journal.progress(self.seq, self.row(self.tokens))
