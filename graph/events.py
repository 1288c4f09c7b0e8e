"""The event vocabulary: every step of a run that a follower can see, one TypedDict per event.

Nodes write progress events to LangGraph's stream; the service adds the run's lifecycle events
(``run.*``) and numbers them all. Every face (SSE, the OpenAI route, the CLI, the page) switches
on these names; no other module spells them out.
"""

from typing import Final, Literal, cast

from typing_extensions import TypedDict

from graph.ledger import NodeName, NodeUsage, Usage
from graph.result import Result, RunError
from graph.state import SubTask, VerdictRecord

RUN_STARTED: Final = "run.started"
RUN_RESUMED: Final = "run.resumed"
STAGE: Final = "stage"
PLAN_TASK: Final = "plan.task"
PLAN: Final = "plan"
TASK_STARTED: Final = "task.started"
TASK_COMPLETED: Final = "task.completed"
TASK_FAILED: Final = "task.failed"
TOOL_CALLED: Final = "tool.called"
TOOL_RESULT: Final = "tool.result"
CRITIQUE: Final = "critique"
ANSWER_DELTA: Final = "answer.delta"
USAGE: Final = "usage"
RUN_COMPLETED: Final = "run.completed"
RUN_FAILED: Final = "run.failed"
RUN_CANCELLED: Final = "run.cancelled"
RUN_INTERRUPTED: Final = "run.interrupted"

EventName = Literal[
    "run.started",
    "run.resumed",
    "stage",
    "plan.task",
    "plan",
    "task.started",
    "task.completed",
    "task.failed",
    "tool.called",
    "tool.result",
    "critique",
    "answer.delta",
    "usage",
    "run.completed",
    "run.failed",
    "run.cancelled",
    "run.interrupted",
]
TerminalEventName = Literal["run.completed", "run.failed", "run.cancelled", "run.interrupted"]
TERMINAL_EVENTS: Final[frozenset[EventName]] = frozenset(
    {RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED, RUN_INTERRUPTED}
)
"""Exactly one of these ends every run's event log."""

Stage = Literal["planning", "answering", "reviewing", "revising", "writing"]


class RunSettings(TypedDict):
    max_subtasks: int
    max_revisions: int
    max_output_tokens: int


class RunStarted(TypedDict):
    run_id: str
    question: str
    reasoning_effort: str | None
    settings: RunSettings


class RunResumed(TypedDict):
    """The seam of a run taken up again by another process: ``resumes`` counts the times its
    process died (a shutdown that left it to resume does not count), ``after`` is the id of the
    last event before the seam. Work done before it is not redone
    (and its events are not repeated); the answer text starts again from the beginning."""

    run_id: str
    resumes: int
    after: int


class StageStarted(TypedDict):
    """The stage the run is in now; ``round`` counts the critic's rounds (reviewing, revising)."""

    stage: Stage
    round: int | None


class PlanTask(TypedDict):
    """One task of the plan, the moment the planner has written it (before the plan is done)."""

    task: SubTask


class PlanMade(TypedDict):
    """The whole plan, once it is complete and checked."""

    subtasks: list[SubTask]


class TaskStarted(TypedDict):
    """A worker starts; ``inputs`` are the tasks whose answers it was given."""

    task_id: str
    attempt: int
    inputs: list[str]


class TaskTokens(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TaskCompleted(TypedDict):
    task_id: str
    attempt: int
    answer: str
    usage: TaskTokens


class TaskFailed(TypedDict):
    task_id: str
    attempt: int
    error: str


class ToolCalled(TypedDict):
    """A worker calls a tool: its reply at ``step`` of the task's tool loop asked for it.
    ``arguments`` is their JSON, cut to the run's limit on tool text."""

    task_id: str
    attempt: int
    step: int
    call_id: str
    name: str
    arguments: str


class ToolResult(TypedDict):
    """What the tool returned (``result``, cut as the model reads it) or why it did not
    (``error``)."""

    task_id: str
    attempt: int
    step: int
    call_id: str
    name: str
    result: str
    error: str | None
    duration_ms: float


class CritiqueMade(TypedDict):
    round: int
    verdicts: list[VerdictRecord]


class AnswerDelta(TypedDict):
    text: str


class UsageReport(TypedDict):
    usage: Usage
    by_node: dict[NodeName, NodeUsage]


class RunEnded(TypedDict):
    """Every terminal event: the run, its result, and its error (null unless ``run.failed``).

    The result is null only when the run ended before it could have one.
    """

    run_id: str
    result: Result | None
    error: RunError | None


EventData = (
    RunStarted
    | RunResumed
    | StageStarted
    | PlanTask
    | PlanMade
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | ToolCalled
    | ToolResult
    | CritiqueMade
    | AnswerDelta
    | UsageReport
    | RunEnded
)

EVENT_DATA: Final[dict[EventName, type[EventData]]] = {
    RUN_STARTED: RunStarted,
    RUN_RESUMED: RunResumed,
    STAGE: StageStarted,
    PLAN_TASK: PlanTask,
    PLAN: PlanMade,
    TASK_STARTED: TaskStarted,
    TASK_COMPLETED: TaskCompleted,
    TASK_FAILED: TaskFailed,
    TOOL_CALLED: ToolCalled,
    TOOL_RESULT: ToolResult,
    CRITIQUE: CritiqueMade,
    ANSWER_DELTA: AnswerDelta,
    USAGE: UsageReport,
    RUN_COMPLETED: RunEnded,
    RUN_FAILED: RunEnded,
    RUN_CANCELLED: RunEnded,
    RUN_INTERRUPTED: RunEnded,
}
"""The payload type of each event."""


class ProgressEvent(TypedDict):
    """What a node writes to LangGraph's custom stream."""

    event: EventName
    data: EventData


def replay_key(name: EventName, data: EventData) -> tuple[object, ...] | None:
    """What makes a progress event the same step as one already in the log: a resumed run
    re-enters the node it died in, and this tells which of the events it writes again happened
    before the seam. None for events that are never repeats (answer text, lifecycle)."""
    fields: dict[EventName, tuple[str, ...]] = {
        STAGE: ("stage", "round"),
        PLAN: (),
        TASK_STARTED: ("task_id", "attempt"),
        TASK_COMPLETED: ("task_id", "attempt"),
        TASK_FAILED: ("task_id", "attempt"),
        TOOL_CALLED: ("task_id", "attempt", "call_id"),
        TOOL_RESULT: ("task_id", "attempt", "call_id"),
        CRITIQUE: ("round",),
    }
    if name == PLAN_TASK:
        return (name, cast(PlanTask, data)["task"]["id"])
    if name not in fields:
        return None
    values = cast(dict[str, object], data)
    return (name, *(values[f] for f in fields[name]))
