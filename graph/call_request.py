"""One request to the model backend: the output cap and response format in the fields it
honours, and the reply read whole or streamed; what cannot be read is a MalformedResponse."""

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import RunnableConfig

from graph.errors import MalformedResponse, reading_response
from graph.models import ModelSpec


def request_options(
    spec: ModelSpec, max_tokens: int, response_format: dict[str, Any] | None
) -> dict[str, Any]:
    """The output cap in the field the backend honours, and the response format.

    Both travel in ``extra_body``: passed as ``response_format`` the SDK would take its slower
    parse path and re-validate the schema on every call.
    """
    body: dict[str, Any] = {} if response_format is None else {"response_format": response_format}
    if spec.token_cap_param == "max_tokens":
        return {"extra_body": {**body, "max_tokens": max_tokens}}
    return {"max_completion_tokens": max_tokens, **({"extra_body": body} if body else {})}


async def send(
    spec: ModelSpec,
    messages: list[BaseMessage],
    kwargs: dict[str, Any],
    on_delta: Callable[[str], None] | None,
    config: RunnableConfig | None = None,
) -> AIMessage | AIMessageChunk:
    """One request (``config``: the chat model's run config, merged into the node's). What goes
    wrong while the client reads the backend's response is a MalformedResponse; an error in our
    own code (``on_delta``) stays what it is."""
    if on_delta is None or not spec.stream:
        with reading_response():
            result = await spec.chat.ainvoke(messages, config, **kwargs)
        if not isinstance(result, AIMessage):
            raise MalformedResponse(f"expected an AI message, got {type(result).__name__}")
        return result
    full: AIMessageChunk | None = None
    chunks = aiter(spec.chat.astream(messages, config, **kwargs))
    while True:
        try:
            with reading_response():
                chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        if not isinstance(chunk, AIMessageChunk):
            raise MalformedResponse(f"expected an AI message chunk, got {type(chunk).__name__}")
        if chunk.text:
            on_delta(chunk.text)
        full = chunk if full is None else full + chunk
    if full is None:
        raise MalformedResponse("the backend streamed no message")
    return full
