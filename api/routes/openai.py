"""An OpenAI-compatible face: the service as a "reasoning model" for any OpenAI client."""

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import RunnerDep, SettingsDep
from api.errors import RUN_ERRORS, ApiError, documented
from api.events import HEARTBEAT_FRAME, SSE_HEADERS, TERMINAL_EVENTS, encode_data
from api.routes.reason import raise_for_failure
from api.runner import Runner
from api.schemas import Effort, ErrorBody, ReasonRequest
from api.settings import Settings
from api.streams import cancel_later
from graph import Result, Usage
from graph.prompts import CONVERSATION_QUESTION

router = APIRouter(prefix="/v1", tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Sampling fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    max_completion_tokens: int | None = Field(
        None, ge=1, le=100_000_000, description="caps reasoning + output tokens, as OpenAI's does"
    )
    max_tokens: int | None = Field(None, ge=1, le=100_000_000, description="legacy max_completion_tokens")


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "reasoner"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def completion_usage(usage: Usage) -> CompletionUsage:
    """Reasoning and output are both completion tokens, as for OpenAI's reasoning models."""
    return CompletionUsage(
        prompt_tokens=usage["input_tokens"],
        completion_tokens=usage["output_tokens"] + usage["reasoning_tokens"],
        total_tokens=usage["total_tokens"],
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage["reasoning_tokens"]),
    )


def to_reason_request(body: ChatCompletionRequest) -> ReasonRequest:
    """The last user message is the question; earlier messages are its context."""
    users = [i for i, m in enumerate(body.messages) if m.role == "user"]
    if not users or not body.messages[users[-1]].text.strip():
        raise ApiError(400, "the last user message is missing or empty", param="messages")
    last = users[-1]
    question = body.messages[last].text.strip()
    context = [m for m in body.messages[:last] if m.text.strip()]
    if context:
        lines = "\n".join(f"{m.role}: {m.text.strip()}" for m in context)
        question = CONVERSATION_QUESTION.format(conversation=lines, question=question)
    effort: Effort | None = "low" if body.reasoning_effort == "minimal" else body.reasoning_effort
    try:
        return ReasonRequest(question=question, reasoning_effort=effort)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise ApiError(400, f"the conversation cannot be a question: {message}", param="messages") from None


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
            "ending with `data: [DONE]`",
            "content": {"text/event-stream": {}},
        },
    },
)
async def chat_completions(
    body: ChatCompletionRequest, runner: RunnerDep, settings: SettingsDep
) -> ChatCompletion | StreamingResponse:
    """Answer the conversation's last user message with the full reasoning pipeline."""
    _check_model(body, settings)
    request = to_reason_request(body)
    run_id = await runner.submit(request, completion_budget=body.max_completion_tokens or body.max_tokens)
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(runner, run_id, body.model, created, include_usage, settings.cancel_on_disconnect)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    result = await runner.wait(run_id)
    raise_for_failure(result)
    return ChatCompletion(
        id=f"chatcmpl-{run_id}",
        created=created,
        model=body.model,
        choices=[Choice(message=AssistantMessage(content=result["answer"]))],
        usage=completion_usage(result["usage"]),
    )


async def _chunks(
    runner: Runner, run_id: str, model: str, created: int, include_usage: bool, cancel_on_disconnect: bool
) -> AsyncIterator[str]:
    base: dict[str, Any] = {
        "id": f"chatcmpl-{run_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return encode_data({**base, "choices": [choice]})

    ended = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in runner.follow(run_id):
            if event is None:
                yield HEARTBEAT_FRAME
                continue
            ended = ended or event.event in TERMINAL_EVENTS
            if event.event == "answer.delta":
                yield chunk({"content": event.data["text"]})
            elif event.event == "run.completed":
                result: Result = event.data["result"]
                yield chunk({}, "stop")
                if include_usage:
                    usage = completion_usage(result["usage"]).model_dump()
                    yield encode_data({**base, "choices": [], "usage": usage})
            elif event.event in TERMINAL_EVENTS:
                error = event.data.get("error") or {"kind": "run_stopped", "message": "the run was stopped"}
                body = ErrorBody(message=error["message"], type="upstream_error", code=error["kind"])
                yield encode_data({"error": body.model_dump()})
        yield encode_data("[DONE]")
    finally:
        if not ended and cancel_on_disconnect:
            cancel_later(runner, run_id)
