"""An OpenAI-compatible face: the service as a "reasoning model" for any OpenAI client (the
format itself: ``api.http.openai_format``)."""

import time
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response, StreamingResponse

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
from api.http.openai_format import ChunkWriter, completion_usage, reasoning_text, to_reason_request
from api.http.openapi import CHAT_COMPLETION_FRAME, sse_content
from api.http.schemas import AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, Model, ModelList
from api.http.sse import SSE_HEADERS, encode_data
from api.http.streams import follow_frames
from api.runs.idempotency import idempotency_key
from api.runs.lookup import RunLookup
from api.settings import Settings

router = APIRouter(prefix="/v1", tags=["openai"])

RUN_ID_HEADER = "X-Run-Id"
"""Names the run behind a chat completion, so it can be fetched from the runs API."""


def _check_model(body: ChatCompletionRequest, settings: Settings) -> None:
    if body.model != settings.served_model_name:
        raise ApiError(
            404,
            f"the model {body.model!r} does not exist; this service serves {settings.served_model_name!r}",
            param="model",
            code="model_not_found",
        )


async def run_reasoning(lookup: RunLookup, run_id: str) -> str:
    """The "thinking" of an ended run: its events' ``reasoning_text``, as its stream sends them."""
    parts = []
    async for event in lookup.follow(run_id):
        if event is not None and (text := reasoning_text(event)) is not None:
            parts.append(text)
    return "".join(parts)


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
            "description": "A chat completion (the run's progress in `message.reasoning_content`), "
            "or with `stream: true` chat.completion.chunk events (the progress in "
            "`delta.reasoning_content`, then the answer in `delta.content`) ending with "
            "`data: [DONE]`. The `X-Run-Id` header names the run.",
            "content": sse_content(CHAT_COMPLETION_FRAME),
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
    message = AssistantMessage(
        content=result["answer"], reasoning_content=await run_reasoning(lookup, run_id)
    )
    return ChatCompletion(
        id=f"chatcmpl-{run_id}",
        created=created,
        model=body.model,
        choices=[Choice(message=message)],
        usage=completion_usage(result["usage"]),
    )
