"""Request and response models of the HTTP API (a run's own request, ``ReasonRequest``, is the
run service's: ``api.runs.request``)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.runs.request import Effort as Effort
from api.runs.request import ReasonRequest as ReasonRequest
from api.storage.interface import Status
from graph import Result


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error from every endpoint, in OpenAI's shape."""

    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "degraded"] = "ok"
    detail: str | None = Field(None, description="what is degraded, and what still works")


# Runs


class RunAccepted(BaseModel):
    run_id: str
    status: Status


class RunView(BaseModel):
    run_id: str
    status: Status
    question: str
    created_at: str
    updated_at: str
    result: Result | None = None


class RunSummary(BaseModel):
    run_id: str
    status: Status
    question: str
    created_at: str
    updated_at: str
    total_tokens: int | None = None


class RunPage(BaseModel):
    data: list[RunSummary]
    has_more: bool
    next_before: str | None = None


# The OpenAI-compatible face


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


UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call")
"""Request fields this model cannot honour: it calls no tools."""

HARMLESS_ONLY: dict[str, Any] = {
    **{name: {"enum": [None, [], "none"]} for name in UNSUPPORTED},
    "response_format": {"enum": [None, {"type": "text"}]},
    "logprobs": {"enum": [None, False, 0, "", [], {}]},
}
"""What the OpenAPI document allows of the fields that are refused unless harmless (anything
else: 400 ``unsupported_parameter``); the request model lets them through to that check."""


def _declare_harmless_only(schema: dict[str, Any]) -> None:
    for name, allowed in HARMLESS_ONLY.items():
        schema["properties"][name] = {
            **allowed,
            "description": "refused unless harmless (400 unsupported_parameter)",
        }


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Sampling fields are accepted and ignored; fields that
    would change what the reply is (tools, several choices, a response format) are refused."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_declare_harmless_only)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    n: int | None = Field(
        None,
        ge=1,
        le=128,
        json_schema_extra={"maximum": 1},
        description="only 1 is supported (more: 400 unsupported_parameter)",
    )
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
    cost: float | None = Field(None, description="US dollars, as OpenRouter reports it; null without prices")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str = Field(
        description="the run's progress (plan, sub-answers, reviews): what a stream sends as "
        "`delta.reasoning_content`"
    )
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop"] | None


class ChatCompletionChunk(BaseModel):
    """One frame of a streamed chat completion: the run's progress, the answer, then (with
    ``stream_options.include_usage``) a last frame with no choices and the usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "reasoner"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# Usage


class KeyUsageDay(BaseModel):
    day: str = Field(description="UTC", json_schema_extra={"format": "date"})
    runs: int
    total_tokens: int = Field(description="of the runs that have finished")
    cost_usd: float | None = Field(description="of the finished runs that have a cost; null if none has")


class KeyUsage(BaseModel):
    key: str | None = Field(
        description="the key's name (API_KEYS_FILE; key-1, key-2… for API_KEYS); null without keys"
    )
    since: str = Field(json_schema_extra={"format": "date"})
    until: str = Field(json_schema_extra={"format": "date"})
    days: list[KeyUsageDay]
    runs: int
    total_tokens: int
    cost_usd: float | None
