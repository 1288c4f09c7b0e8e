"""OpenAI's chat format for the service: a chat completion request as a run's request, and a
run's usage and events as OpenAI's usage and ``chat.completion.chunk`` frames."""

from collections.abc import Iterator
from typing import Any, cast

from pydantic import ValidationError

from api.http.errors import ApiError
from api.http.schemas import (
    UNSUPPORTED,
    ChatCompletionRequest,
    CompletionTokensDetails,
    CompletionUsage,
    Effort,
    ErrorBody,
    ReasonRequest,
)
from api.http.sse import encode_data
from api.storage.interface import Event
from graph import Usage
from graph.events import (
    ANSWER_DELTA,
    CRITIQUE,
    PLAN,
    PLAN_TASK,
    RUN_COMPLETED,
    TASK_COMPLETED,
    TASK_FAILED,
    TERMINAL_EVENTS,
    TOOL_RESULT,
    AnswerDelta,
    CritiqueMade,
    PlanTask,
    RunEnded,
    TaskCompleted,
    TaskFailed,
    ToolResult,
)
from graph.prompts import CONVERSATION_QUESTION


def completion_usage(usage: Usage) -> CompletionUsage:
    """Reasoning and output are both completion tokens, as for OpenAI's reasoning models."""
    return CompletionUsage(
        prompt_tokens=usage["input_tokens"],
        completion_tokens=usage["output_tokens"] + usage["reasoning_tokens"],
        total_tokens=usage["total_tokens"],
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage["reasoning_tokens"]),
        cost=usage.get("cost_usd"),
    )


def unsupported_parameter(body: ChatCompletionRequest) -> str | None:
    """The first field of the request that would be silently ignored, if any."""
    extra = body.model_extra or {}
    for name in UNSUPPORTED:
        if extra.get(name) not in (None, [], "none"):
            return name
    if body.n is not None and body.n > 1:
        return "n"
    response_format = extra.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        return "response_format"
    if extra.get("logprobs"):
        return "logprobs"
    return None


def to_reason_request(body: ChatCompletionRequest) -> ReasonRequest:
    """The last message, from the user, is the question; earlier messages are its context."""
    if (name := unsupported_parameter(body)) is not None:
        raise ApiError(
            400, f"{name} is not supported by this model", param=name, code="unsupported_parameter"
        )
    last = len(body.messages) - 1
    if body.messages[last].role != "user":
        raise ApiError(
            400, "the last message must be from the user", param="messages", code="invalid_messages"
        )
    question = body.messages[last].text.strip()
    if not question:
        raise ApiError(400, "the last message is empty", param="messages", code="invalid_messages")
    context = [m for m in body.messages[:last] if m.text.strip()]
    if context:
        lines = "\n".join(f"{m.role}: {m.text.strip()}" for m in context)
        question = CONVERSATION_QUESTION.format(conversation=lines, question=question)
    effort: Effort | None = "low" if body.reasoning_effort == "minimal" else body.reasoning_effort
    try:
        return ReasonRequest(question=question, reasoning_effort=effort)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise ApiError(
            400,
            f"the conversation cannot be a question: {message}",
            param="messages",
            code="invalid_messages",
        ) from None


def reasoning_text(event: Event) -> str | None:
    """The run's progress as the "thinking" text of a reply: ``delta.reasoning_content`` in a
    stream, all of it in ``message.reasoning_content`` otherwise."""
    if event.event == PLAN_TASK:
        task = cast(PlanTask, event.data)["task"]
        after = f" (after {', '.join(task['depends_on'])})" if task["depends_on"] else ""
        return ("Plan:\n" if task["id"] == "t1" else "") + f"- {task['id']}{after}: {task['question']}\n"
    if event.event == PLAN:
        return "\n"
    if event.event == TASK_COMPLETED:
        done = cast(TaskCompleted, event.data)
        return f"{done['task_id']} (attempt {done['attempt']}): {done['answer']}\n\n"
    if event.event == TASK_FAILED:
        failed = cast(TaskFailed, event.data)
        return f"{failed['task_id']} (attempt {failed['attempt']}) failed: {failed['error']}\n\n"
    if event.event == TOOL_RESULT:
        tool = cast(ToolResult, event.data)
        said = f"error: {tool['error']}" if tool["error"] is not None else tool["result"]
        return f"{tool['task_id']} called {tool['name']}: {said}\n"
    if event.event == CRITIQUE:
        critique = cast(CritiqueMade, event.data)
        lines = [
            f"- {v['task_id']}: {v['verdict']}" + (f" ({v['feedback']})" if v["feedback"] else "")
            for v in critique["verdicts"]
        ]
        return f"Review, round {critique['round']}:\n" + "\n".join(lines) + "\n\n"
    return None


class ChunkWriter:
    """A run's events as ``chat.completion.chunk`` frames."""

    def __init__(self, run_id: str, model: str, created: int, include_usage: bool) -> None:
        self.base: dict[str, Any] = {
            "id": f"chatcmpl-{run_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return encode_data({**self.base, "choices": [choice]})

    def render(self, event: Event) -> Iterator[str]:
        if event.event == ANSWER_DELTA:
            yield self.chunk({"content": cast(AnswerDelta, event.data)["text"]})
        elif (thinking := reasoning_text(event)) is not None:
            yield self.chunk({"reasoning_content": thinking})
        elif event.event in TERMINAL_EVENTS:
            ended = cast(RunEnded, event.data)
            if event.event == RUN_COMPLETED and ended["result"] is not None:
                yield self.chunk({}, "stop")
                if self.include_usage:
                    usage = completion_usage(ended["result"]["usage"]).model_dump()
                    yield encode_data({**self.base, "choices": [], "usage": usage})
                return
            error = ended["error"]
            body = ErrorBody(
                message=error["message"] if error else "the run was stopped before it answered",
                type="server_error" if error and error["kind"] == "internal_error" else "upstream_error",
                code=error["kind"] if error else "run_stopped",
            )
            yield encode_data({"error": body.model_dump()})
