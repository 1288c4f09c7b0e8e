"""The chat models the graph talks to, one per role, and how to call each backend."""

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from openai import AsyncStream, NotGiven, not_given
from openai._base_client import make_request_options
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import SecretStr, model_validator

from graph.calibration import Calibration, Rates

StructuredOutput = Literal["json_schema", "json_object", "none"]
"""How to ask a backend for JSON that follows a schema.

- ``json_schema``: OpenAI's ``response_format`` json_schema (OpenAI, vLLM, recent Ollama).
- ``json_object``: ``{"type": "json_object", "schema": ...}``, grammar-constrained on llama.cpp.
- ``none``: the schema is only described in the prompt.
"""

DOWNGRADE: dict[StructuredOutput, StructuredOutput] = {"json_schema": "json_object", "json_object": "none"}
"""The next mode to try when a backend rejects one."""
RANK: dict[StructuredOutput, int] = {"json_schema": 2, "json_object": 1, "none": 0}

log = logging.getLogger(__name__)


@dataclass
class StructuredMode:
    """How one model is asked for JSON. When ``adaptive``, a mode the backend rejects is
    replaced by a lower one that worked, for the life of the process (shared by every role on
    the model)."""

    current: StructuredOutput = "json_schema"
    adaptive: bool = False

    def next_after(self, rejected: StructuredOutput) -> StructuredOutput | None:
        """The mode to try after ``rejected`` failed; None if there is none left (or not adaptive)."""
        return DOWNGRADE.get(rejected) if self.adaptive else None

    def adopt(self, model: str, worked: StructuredOutput, rejected: StructuredOutput) -> bool:
        """Keep ``worked`` from now on, since ``rejected`` failed and it did not; False if an
        earlier call already did."""
        if RANK[worked] >= RANK[self.current]:
            return False
        self.current = worked
        log.warning(
            "the backend rejected structured output %s; using %s from now on",
            rejected,
            worked,
            extra={"model": model},
        )
        return True


@dataclass
class ToolSupport:
    """Whether a model takes tools. A backend that rejects them (a 4xx to a call that offered
    them) is remembered for the life of the process, and its workers answer without tools."""

    rejected: bool = False

    def reject(self, model: str, reason: str) -> None:
        """Remember the rejection (logged once)."""
        if not self.rejected:
            self.rejected = True
            log.warning(
                "the backend rejected tools (%s); workers answer without them", reason, extra={"model": model}
            )


TokenCapParam = Literal["max_tokens", "max_completion_tokens"]
"""The request field a backend honours as the output cap.

OpenAI wants ``max_completion_tokens``; llama.cpp's servers honour only ``max_tokens``.
"""


@dataclass(frozen=True)
class ModelSpec:
    """One backend model and the request conventions it needs."""

    chat: BaseChatModel
    name: str
    structured: StructuredMode = field(default_factory=StructuredMode)
    tool_support: ToolSupport = field(default_factory=ToolSupport)
    token_cap_param: TokenCapParam = "max_tokens"
    stream: bool = True
    calibration: Calibration = field(default_factory=Calibration)
    """What the backend bills per cl100k token, learned from its reports; share one among the
    models of a backend, so that a model not heard from yet starts from what the others showed."""

    def rates(self) -> Rates:
        return self.calibration.rates(self.name)


@dataclass(frozen=True)
class Models:
    planner: ModelSpec
    worker: ModelSpec
    critic: ModelSpec
    synthesizer: ModelSpec

    @classmethod
    def same(cls, spec: ModelSpec) -> "Models":
        return cls(planner=spec, worker=spec, critic=spec, synthesizer=spec)

    @property
    def names(self) -> frozenset[str]:
        """The model names the roles use (the ledger's ``model``)."""
        return frozenset(spec.name for spec in (self.planner, self.worker, self.critic, self.synthesizer))

    def rates(self) -> Rates:
        """The highest rates of the roles' models: what admission plans a run with."""
        return self.planner.rates() | self.worker.rates() | self.critic.rates() | self.synthesizer.rates()


class PlainCompletions:
    """``chat.completions`` whose ``create`` posts the body as given.

    The SDK's ``create`` walks every request body against its typed parameters (aliases, dates,
    files), about 0.4 ms per call; langchain-openai's payload is plain JSON already. A reply read
    whole is handed on as the JSON it arrived as: langchain-openai builds its message from a dict,
    and a ``ChatCompletion`` built only to be dumped back into one cost ~0.1 ms per call. The post
    goes through the same client, with the same options; everything else (``parse``,
    ``with_raw_response``, streams) is the resource's own.
    """

    def __init__(self, resource: Any, client: openai.AsyncOpenAI) -> None:
        self._resource = resource
        self._client = client

    async def create(
        self,
        *,
        extra_headers: dict[str, str] | None = None,
        extra_query: dict[str, object] | None = None,
        extra_body: dict[str, object] | None = None,
        timeout: float | NotGiven | None = not_given,
        **body: Any,
    ) -> dict[str, Any] | AsyncStream[ChatCompletionChunk]:
        options = make_request_options(
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            security={"bearer_auth": True},
        )
        if body.get("stream"):
            return await self._client.post(
                "/chat/completions",
                body=body,
                options=options,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
        reply = await self._client.post("/chat/completions", body=body, options=options, cast_to=object)
        return cast(dict[str, Any], reply)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)


class ChatOnLoop(ChatOpenAI):
    """ChatOpenAI whose plain chat completions are sent as built and read where they arrive,
    on the event loop.

    langchain-openai hands every reply to the default thread pool to build its result (a thread
    hop per call, for a conversion of a few hundred microseconds), and the SDK re-walks every
    body (``PlainCompletions``). Structured parsing, the Responses API and response headers
    keep the library's own path.
    """

    @model_validator(mode="after")
    def _plain_completions(self) -> "ChatOnLoop":
        if self.root_async_client is not None and not isinstance(self.async_client, PlainCompletions):
            self.async_client = PlainCompletions(self.async_client, self.root_async_client)
        return self

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if "response_format" in payload or self._use_responses_api(payload) or self.include_response_headers:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        return self._create_chat_result(await self.async_client.create(**payload), {})


def openai_chat_model(
    *,
    model: str,
    base_url: str | None,
    api_key: str,
    timeout_s: float,
    http_client: openai.DefaultAsyncHttpxClient | None = None,
) -> ChatOpenAI:
    """A ChatOpenAI client for any OpenAI-compatible backend.

    The SDK's own retries are off: the graph runs the one retry loop, so every attempt
    is counted in the ledger. ``stream_usage`` is on so streamed calls carry usage where
    the backend supports it. Pass ``http_client`` to own the connections (and close them);
    without it langchain-openai shares one client per base URL for the whole process.
    """
    return ChatOnLoop(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key),
        timeout=timeout_s,
        max_retries=0,
        stream_usage=True,
        openai_proxy=None,
        http_async_client=http_client,
    )
