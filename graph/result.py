"""The result of one run: the same object for the CLI's --json, the HTTP API and the store."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from typing_extensions import TypedDict

from graph.errors import ErrorKind
from graph.ledger import CallRecord, NodeName, NodeUsage, Prices, Usage, by_node, summarize
from graph.state import Fallback, OutputState, SubAnswer, SubTask, VerdictRecord

RunStatus = Literal["completed", "partial", "failed", "cancelled"]


class RunError(TypedDict):
    kind: ErrorKind
    message: str
    node: str | None


class Timings(TypedDict):
    total_ms: float
    """Wall time from the run's creation to its end, time suspended (between a crash and the
    resume) included."""
    active_ms: float
    """Time executing, summed over the run's executions; one that a crash ended counts the time
    its calls were out as their stored rows tell (a call cut short, to its last progress)."""
    resumes: int
    """How many times the run was taken up again after its process stopped."""
    planner_ms: float
    workers_ms: float
    critic_ms: float
    synthesizer_ms: float


class Result(TypedDict):
    run_id: str
    status: RunStatus
    question: str
    answer: str
    plan: list[SubTask]
    subanswers: list[SubAnswer]
    critique: list[VerdictRecord]
    usage: Usage
    by_node: dict[NodeName, NodeUsage]
    calls: list[CallRecord]
    timings: Timings
    fallbacks: list[Fallback]
    budget_exhausted: bool
    error: RunError | None
    trace_id: str | None
    """The run's OpenTelemetry trace (32 hex digits), when tracing is on."""


@dataclass(frozen=True)
class RunClock:
    """What the run's timings count from besides the execution that ends it, as the service
    knows it. ``created_at`` None: the run's time is this execution's. ``earlier_active_ms``:
    the time earlier executions were busy (their model calls out, see ``busy_ms``)."""

    created_at: datetime | None = None
    earlier_active_ms: float = 0.0
    resumes: int = 0

    def timings(self, execution_ms: float, ended_at: datetime) -> tuple[float, float]:
        """(total_ms, active_ms) of a run whose last execution took ``execution_ms`` and ended
        at ``ended_at``. The total is never below the active time (another clock may have
        stamped ``created_at``)."""
        active = self.earlier_active_ms + execution_ms
        if self.created_at is None:
            return active, active
        wall = (ended_at - self.created_at).total_seconds() * 1000
        return max(wall, active), active


def busy_ms(calls: list[CallRecord]) -> float:
    """The time at least one of these calls was out (overlapping calls counted once)."""
    spans = sorted(
        (datetime.fromisoformat(c["started_at"]), datetime.fromisoformat(c["finished_at"])) for c in calls
    )
    total = 0.0
    start: datetime | None = None
    end: datetime | None = None
    for s, e in spans:
        if end is None or s > end:
            if start is not None and end is not None:
                total += (end - start).total_seconds()
            start, end = s, e
        else:
            end = max(end, e)
    if start is not None and end is not None:
        total += (end - start).total_seconds()
    return total * 1000


def _span_ms(calls: list[CallRecord], node: NodeName) -> float:
    mine = [c for c in calls if c["node"] == node]
    if not mine:
        return 0.0
    start = min(datetime.fromisoformat(c["started_at"]) for c in mine)
    end = max(datetime.fromisoformat(c["finished_at"]) for c in mine)
    return round((end - start).total_seconds() * 1000, 2)


def assemble(
    *,
    run_id: str,
    question: str,
    state: OutputState | None,
    calls: list[CallRecord],
    question_tokens: int,
    question_exact: bool,
    execution_ms: float,
    error: RunError | None,
    clock: RunClock | None = None,
    budget_exhausted: bool = False,
    status: RunStatus | None = None,
    prices: Prices | None = None,
    trace_id: str | None = None,
) -> Result:
    """Build the result from the final (or last known) state and the run's ledger;
    ``execution_ms`` is how long the execution that ends it took, ``clock`` the rest of its time."""
    clock = clock or RunClock()
    total_ms, active_ms = clock.timings(execution_ms, datetime.now(UTC))
    plan = state["plan"] if state and "plan" in state else []
    answers = state["subanswers"] if state and "subanswers" in state else {}
    subanswers = [answers[t["id"]] for t in plan if t["id"] in answers]
    fallbacks = state.get("fallbacks", []) if state else []
    if status is None:
        if error is not None:
            status = "failed"
        elif any(a["status"] != "ok" for a in subanswers) or any(
            f["kind"] == "unsynthesized" for f in fallbacks
        ):
            status = "partial"
        else:
            status = "completed"
    return Result(
        run_id=run_id,
        status=status,
        question=question,
        answer=(state.get("answer", "") if state else "") if error is None else "",
        plan=plan,
        subanswers=subanswers,
        critique=state.get("critique", []) if state else [],
        usage=summarize(calls, question_tokens, question_exact, prices),
        by_node=by_node(calls, prices),
        calls=list(calls),
        timings=Timings(
            total_ms=round(total_ms, 2),
            active_ms=round(active_ms, 2),
            resumes=clock.resumes,
            planner_ms=_span_ms(calls, "planner"),
            workers_ms=_span_ms(calls, "worker"),
            critic_ms=_span_ms(calls, "critic"),
            synthesizer_ms=_span_ms(calls, "synthesizer"),
        ),
        fallbacks=fallbacks,
        budget_exhausted=budget_exhausted,
        error=error,
        trace_id=trace_id,
    )
