"""The run's call journal: every model call is written down as it starts and as it ends, with
what it returned, so that a run resumed after a crash gets the answers of the calls that had
already returned instead of paying for them again.

LangGraph's checkpoints keep a run's state between nodes; the journal keeps it within a node,
where the planner and the reviser run their workers (see ``graph.dispatch``). A replayed call is
found by its node, task and attempt, and by its place among that key's calls (a structured
call may be followed by a repair call): the code that makes the calls is deterministic given
their answers, so the n-th call of a key asks what it asked the first time.
"""

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from graph.ledger import CallRecord, NodeName

CallKey = tuple[NodeName, str | None, int]
"""(node, task id, attempt)."""

IN_FLIGHT = "in_flight"
"""The error of a call's row while the call is out."""

INTERRUPTED = "interrupted"
"""The error of a call that was in flight when its process died: the backend may have billed it,
but it never reported what it used. Its row keeps what was counted locally (``estimated``): the
prompt, and the completion tokens streamed up to the journal's last running count."""


class CallLog(Protocol):
    """Where the journal's rows go the moment they change (durable storage)."""

    def started(self, seq: int, row: CallRecord) -> None:
        """A call went out, or streamed further; ``row`` has the error ``IN_FLIGHT`` and the
        tokens counted locally so far (its prompt, and what it streamed), ``estimated``."""
        ...

    def ended(self, seq: int, row: CallRecord, output: str | None) -> None:
        """A call ended; ``output`` is its text when it returned one."""
        ...


@dataclass(frozen=True)
class Entry:
    """A call of an earlier attempt of the run, as the journal stored it."""

    seq: int
    row: CallRecord
    output: str | None


def key_of(row: CallRecord) -> CallKey:
    return row["node"], row["task_id"], row["attempt"]


@dataclass
class Journal:
    log: CallLog | None = None
    next_seq: int = 1
    _answers: dict[CallKey, deque[Entry]] = field(default_factory=dict)

    @classmethod
    def resuming(cls, log: CallLog | None, earlier: Iterable[Entry]) -> "Journal":
        """A journal that replays the calls of ``earlier`` that returned."""
        journal = cls(log)
        for entry in sorted(earlier, key=lambda e: e.seq):
            journal.next_seq = max(journal.next_seq, entry.seq + 1)
            if entry.output is not None and entry.row["error"] is None:
                journal._answers.setdefault(key_of(entry.row), deque()).append(entry)
        return journal

    def replay(self, key: CallKey) -> Entry | None:
        """The next answer an earlier attempt got for this key, if any (each is given once); its
        ``output`` is set."""
        answers = self._answers.get(key)
        return answers.popleft() if answers else None

    def started(self, row: CallRecord) -> int:
        seq = self.next_seq
        self.next_seq += 1
        if self.log is not None:
            self.log.started(seq, row)
        return seq

    def progress(self, seq: int, row: CallRecord) -> None:
        """A call still out has streamed further: its in-flight row is written again."""
        if self.log is not None:
            self.log.started(seq, row)

    def ended(self, seq: int, row: CallRecord, output: str | None) -> None:
        if self.log is not None:
            self.log.ended(seq, row, output)
