"""The result of one run: the same object for the CLI's --json, the HTTP API and the store."""

from datetime import datetime
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
    total_ms: float,
    error: RunError | None,
    budget_exhausted: bool = False,
    status: RunStatus | None = None,
    prices: Prices | None = None,
    trace_id: str | None = None,
) -> Result:
    """Build the result from the final (or last known) state and the run's ledger."""
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
