"""Structured output: the response format asked for, a mode the backend rejects given up for the
next, and a reply parsed as JSON, with one repair call when it does not validate."""

import json
from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ValidationError

from graph.calls import call_text
from graph.context import RunContext
from graph.errors import ModelCallError
from graph.ledger import NodeName
from graph.models import ModelSpec, StructuredOutput
from graph.prompts import REPAIR_USER
from graph.state import Fallback

T = TypeVar("T", bound=BaseModel)


def response_format(mode: StructuredOutput, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def parse_json(text: str, model: type[T]) -> T:
    """Validate a model's reply as ``model``, tolerating code fences and prose around the object."""
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        raise ValueError("the reply contains no JSON object")
    try:
        return model.model_validate(json.loads(text[start : end + 1]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        raise ValueError(f"{where}: {first['msg']}") from exc


FORMAT_REJECTIONS = frozenset({400, 415, 422, 500, 501})
"""How servers answer a response_format they do not support (llama-cpp-python: 500)."""


NOT_ABOUT_FORMAT = frozenset({"model_not_found", "context_length_exceeded"})


def _rejects_format(exc: ModelCallError) -> bool:
    """Whether this failure may be the backend refusing the structured-output mode."""
    return exc.status in FORMAT_REJECTIONS and exc.code not in NOT_ABOUT_FORMAT


async def _call_adapting(
    spec: ModelSpec,
    messages: list[BaseMessage],
    ctx: RunContext,
    schema: dict[str, Any],
    fallbacks: list[Fallback],
    *,
    node: NodeName,
    attempt: int,
    on_delta: Callable[[str], None] | None = None,
) -> str:
    """One structured call; if the backend answers it with an HTTP error that may be about the
    format (the model's mode is adaptive), try the next mode. A lower mode is kept for good only
    once a call in it has worked: one odd failure does not switch modes for the process."""
    mode = spec.structured.current
    rejected: list[tuple[StructuredOutput, int | None]] = []
    while True:
        fmt = response_format(mode, node, schema)
        try:
            text, _ = await call_text(
                spec, messages, ctx, node=node, attempt=attempt, response_format=fmt, on_delta=on_delta
            )
        except ModelCallError as exc:
            following = spec.structured.next_after(mode) if _rejects_format(exc) else None
            if following is None:
                raise
            rejected.append((mode, exc.status))
            mode = following
            continue
        if rejected and spec.structured.adopt(spec.name, mode, rejected[0][0]):
            for tried, status in rejected:
                detail = f"the backend answered {tried} with HTTP {status}; {mode} from now on"
                fallbacks.append(Fallback(node=node, kind="structured_output_downgrade", detail=detail))
        return text


async def call_structured(
    spec: ModelSpec,
    messages: list[BaseMessage],
    ctx: RunContext,
    model: type[T],
    schema: dict[str, Any],
    *,
    node: NodeName,
    fallbacks: list[Fallback],
    attempt: int = 1,
    on_delta: Callable[[str], None] | None = None,
    repair: Callable[[], bool] = lambda: True,
) -> tuple[T | None, str | None]:
    """Ask for JSON following ``schema``; one repair attempt if the reply does not validate.

    Returns the parsed object (or None) and, when parsing failed, why. A structured-output
    mode the backend rejected is added to ``fallbacks`` (even if the call then fails); the
    calls are in the run's ledger. ``on_delta`` streams the first reply where the model streams
    (the repair is not streamed); ``repair`` says whether a reply that does not validate is
    still worth a repair call.
    """
    text = await _call_adapting(
        spec, messages, ctx, schema, fallbacks, node=node, attempt=attempt, on_delta=on_delta
    )
    try:
        return parse_json(text, model), None
    except ValueError as exc:
        error = str(exc)
    if not repair():
        return None, error
    retry = [
        *messages,
        AIMessage(content=text),
        HumanMessage(content=REPAIR_USER.format(error=error, schema=json.dumps(schema))),
    ]
    text = await _call_adapting(spec, retry, ctx, schema, fallbacks, node=node, attempt=attempt)
    try:
        return parse_json(text, model), None
    except ValueError as exc:
        return None, f"{error}; after one repair attempt: {exc}"
