"""The event vocabulary: every step of a run that a follower can see, one TypedDict per event.

Nodes write progress events to LangGraph's stream; the service adds the run's lifecycle events
(``run.*``) and numbers them all. Every face (SSE, the OpenAI route, the CLI, the page) switches
on these names; no other module spells them out.
"""

from typing import Final, Literal

from typing_extensions import TypedDict

from graph.ledger import NodeName, NodeUsage, Usage
from graph.result import Result, RunError
from graph.state import SubTask, VerdictRecord

RUN_STARTED: Final = "run.started"
STAGE: Final = "stage"
PLAN_TASK: Final = "plan.task"
PLAN: Final = "plan"
TASK_STARTED: Final = "task.started"
TASK_COMPLETED: Final = "task.completed"
TASK_FAILED: Final = "task.failed"
CRITIQUE: Final = "critique"
ANSWER_DELTA: Final = "answer.delta"
USAGE: Final = "usage"
RUN_COMPLETED: Final = "run.completed"
RUN_FAILED: Final = "run.failed"
RUN_CANCELLED: Final = "run.cancelled"
RUN_INTERRUPTED: Final = "run.interrupted"

EventName = Literal[
    "run.started",
    "stage",
    "plan.task",
    "plan",
    "task.started",
    "task.completed",
    "task.failed",
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
    | StageStarted
    | PlanTask
    | PlanMade
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | CritiqueMade
    | AnswerDelta
    | UsageReport
    | RunEnded
)

EVENT_DATA: Final[dict[EventName, type[EventData]]] = {
    RUN_STARTED: RunStarted,
    STAGE: StageStarted,
    PLAN_TASK: PlanTask,
    PLAN: PlanMade,
    TASK_STARTED: TaskStarted,
    TASK_COMPLETED: TaskCompleted,
    TASK_FAILED: TaskFailed,
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
