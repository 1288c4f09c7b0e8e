"""An OpenAI-compatible face: the service as a "reasoning model" for any OpenAI client."""

import time
from collections.abc import Iterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from api.http.auth import CallerDep
from api.http.deps import (
    REPLAYED_HEADER,
    IdempotencyHeader,
    LookupDep,
    OnDisconnectDep,
    RunnerDep,
    SettingsDep,
)
from api.http.errors import RUN_ERRORS, ApiError, documented, raise_for_failure, run_suspended
from api.http.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionTokensDetails,
    CompletionUsage,
    Effort,
    ErrorBody,
    Model,
    ModelList,
    ReasonRequest,
)
from api.http.sse import SSE_HEADERS, encode_data
from api.http.streams import follow_frames
from api.runs.idempotency import idempotency_key
from api.settings import Settings
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
    AnswerDelta,
    CritiqueMade,
    PlanTask,
    RunEnded,
    TaskCompleted,
    TaskFailed,
)
from graph.prompts import CONVERSATION_QUESTION

router = APIRouter(prefix="/v1", tags=["openai"])

RUN_ID_HEADER = "X-Run-Id"
"""Names the run behind a chat completion, so it can be fetched from the runs API."""


def completion_usage(usage: Usage) -> CompletionUsage:
    """Reasoning and output are both completion tokens, as for OpenAI's reasoning models."""
    return CompletionUsage(
        prompt_tokens=usage["input_tokens"],
        completion_tokens=usage["output_tokens"] + usage["reasoning_tokens"],
        total_tokens=usage["total_tokens"],
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage["reasoning_tokens"]),
        cost=usage.get("cost_usd"),
    )


UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call")
"""Request fields this model cannot honour: it calls no tools."""


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


def _check_model(body: ChatCompletionRequest, settings: Settings) -> None:
    if body.model != settings.served_model_name:
        raise ApiError(
            404,
            f"the model {body.model!r} does not exist; this service serves {settings.served_model_name!r}",
            param="model",
            code="model_not_found",
        )


@router.get("/models", responses=documented(401))
async def list_models(settings: SettingsDep) -> ModelList:
    return ModelList(data=[Model(id=settings.served_model_name)])


@router.get("/models/{model_id}", responses=documented(401, 404))
async def get_model(model_id: Annotated[str, Path()], settings: SettingsDep) -> Model:
    if model_id != settings.served_model_name:
        raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")
    return Model(id=model_id)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **documented(404, *RUN_ERRORS),
        200: {
            "description": "A chat completion, or with `stream: true` chat.completion.chunk events "
            "(the run's progress in `delta.reasoning_content`, then the answer in `delta.content`) "
            "ending with `data: [DONE]`. The `X-Run-Id` header names the run.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    runner: RunnerDep,
    lookup: LookupDep,
    settings: SettingsDep,
    on_disconnect: OnDisconnectDep,
    response: Response,
    caller: CallerDep,
    idempotency: IdempotencyHeader = None,
) -> ChatCompletion | StreamingResponse:
    """Answer the conversation's last user message with the full reasoning pipeline.

    With an `Idempotency-Key`, a retry gets the reply (or the stream) of the run the first
    request made."""
    _check_model(body, settings)
    request = to_reason_request(body)
    budget = body.max_completion_tokens or body.max_tokens
    key = idempotency_key(caller, idempotency, "/v1/chat/completions", body)
    submitted = await runner.submit(request, completion_budget=budget, tenant=caller.tenant, idempotency=key)
    run_id = submitted.run_id
    replayed = {REPLAYED_HEADER: "true"} if submitted.replayed else {}
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChunkWriter(run_id, body.model, created, include_usage)
        frames = follow_frames(
            lookup,
            run_id,
            chunks.render,
            first=(chunks.chunk({"role": "assistant", "content": ""}),),
            last=(encode_data("[DONE]"),),
            unfinished=(encode_data({"error": run_suspended(run_id).body.model_dump()}),),
            on_disconnect=on_disconnect,
        )
        headers = {**SSE_HEADERS, RUN_ID_HEADER: run_id, **replayed}
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers)
    response.headers.update({RUN_ID_HEADER: run_id, **replayed})
    result = await lookup.wait(run_id)
    raise_for_failure(result)
    return ChatCompletion(
        id=f"chatcmpl-{run_id}",
        created=created,
        model=body.model,
        choices=[Choice(message=AssistantMessage(content=result["answer"]))],
        usage=completion_usage(result["usage"]),
    )


def reasoning_text(event: Event) -> str | None:
    """The run's progress as the "thinking" text of a streamed reply (``delta.reasoning_content``)."""
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
