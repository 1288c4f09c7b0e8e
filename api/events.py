"""The run's event vocabulary, as typed models (they document the stream in OpenAPI), and
their server-sent-event encoding."""

import json
from typing import Any, Literal

from pydantic import BaseModel

from api.store import Event
from graph import NodeUsage, Result, RunError, Usage
from graph.state import SubTask, VerdictRecord

EventName = Literal[
    "run.started",
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

TERMINAL_EVENTS: frozenset[str] = frozenset(
    {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}
)


class RunStarted(BaseModel):
    run_id: str
    question: str
    settings: dict[str, int]


class PlanEvent(BaseModel):
    subtasks: list[SubTask]


class TaskStarted(BaseModel):
    task_id: str
    attempt: int


class TaskTokens(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TaskCompleted(BaseModel):
    task_id: str
    attempt: int
    answer: str
    usage: TaskTokens


class TaskFailed(BaseModel):
    task_id: str
    attempt: int
    error: str


class CritiqueEvent(BaseModel):
    round: int
    verdicts: list[VerdictRecord]


class AnswerDelta(BaseModel):
    text: str


class UsageEvent(BaseModel):
    usage: Usage
    by_node: dict[str, NodeUsage]


class RunCompleted(BaseModel):
    result: Result


class RunFailed(BaseModel):
    error: RunError | None
    result: Result | None = None


class RunStopped(BaseModel):
    """``run.cancelled`` and ``run.interrupted``."""

    run_id: str
    result: Result | None = None


EVENT_MODELS: dict[str, type[BaseModel]] = {
    "run.started": RunStarted,
    "plan": PlanEvent,
    "task.started": TaskStarted,
    "task.completed": TaskCompleted,
    "task.failed": TaskFailed,
    "critique": CritiqueEvent,
    "answer.delta": AnswerDelta,
    "usage": UsageEvent,
    "run.completed": RunCompleted,
    "run.failed": RunFailed,
    "run.cancelled": RunStopped,
    "run.interrupted": RunStopped,
}


class StreamEvent(BaseModel):
    """One server-sent event: ``id:`` counts up by one within a run, ``event:`` names it and
    ``data:`` is one JSON object whose shape depends on the name (see the *Event models)."""

    id: int
    event: EventName
    data: (
        RunStarted
        | PlanEvent
        | TaskStarted
        | TaskCompleted
        | TaskFailed
        | CritiqueEvent
        | AnswerDelta
        | UsageEvent
        | RunCompleted
        | RunFailed
        | RunStopped
    )


HEARTBEAT_FRAME = ": heartbeat\n\n"

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
"""Headers that keep proxies from buffering or caching the stream."""

SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The run's events as server-sent events (`id`, `event`, `data` lines), "
        "with a comment heartbeat at least every 15 s.",
        "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}},
    }
}


def encode(event: Event) -> str:
    """One SSE frame. The data is a single line of JSON (newlines inside strings are escaped),
    so no text in an event can break the framing."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


def encode_data(payload: dict[str, Any] | str) -> str:
    """A bare ``data:`` frame, as OpenAI-style streams use."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n"
