"""The OpenAPI document: FastAPI's, plus what it cannot infer from the routes. Each server-sent
event is documented with the schema of its ``data`` (graph/events.py), every error response has
the one error shape, and an error any route can give (500) is on every route."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from api.http.errors import ERROR_DESCRIPTIONS
from api.http.schemas import ChatCompletionChunk
from graph.events import EVENT_DATA, EventData

REF = "#/components/schemas/{model}"
STREAM_EVENT = "StreamEvent"
CHAT_COMPLETION_FRAME = "ChatCompletionStreamFrame"
ERROR_RESPONSE = {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}


def json_text(model: str) -> dict[str, Any]:
    """A string that holds one JSON document of the named schema."""
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": REF.format(model=model)},
    }


def event_frame(name: str, model: str) -> dict[str, Any]:
    """One named event of a run's stream, as a client's SSE parser reads it."""
    return {
        "type": "object",
        "title": name,
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "counts up by one within a run"},
            "event": {"const": name},
            "data": json_text(model),
        },
    }


def stream_schemas() -> dict[str, Any]:
    """The schemas of both streams: a run's named events, and a chat completion's frames."""
    data = TypeAdapter(EventData).json_schema(ref_template=REF)
    schemas: dict[str, Any] = data.pop("$defs", {})
    chunk = ChatCompletionChunk.model_json_schema(ref_template=REF)
    schemas.update(chunk.pop("$defs", {}))
    schemas["ChatCompletionChunk"] = chunk
    schemas[STREAM_EVENT] = {
        "description": "One server-sent event of a run: `id` counts up by one, `event` names it and "
        "`data` is one line of JSON whose schema depends on the name. A comment heartbeat comes "
        "at least every 15 s.",
        "oneOf": [event_frame(name, model.__name__) for name, model in EVENT_DATA.items()],
    }
    schemas[CHAT_COMPLETION_FRAME] = {
        "description": "One `data:` frame of a streamed chat completion: a chunk, an error, or the "
        "closing `[DONE]`.",
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"const": "message"},
            "data": {
                "type": "string",
                "if": {"const": "[DONE]"},
                "else": {
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [
                            {"$ref": REF.format(model=m)} for m in ("ChatCompletionChunk", "ErrorResponse")
                        ]
                    },
                },
            },
        },
    }
    return schemas


def sse_content(frame: str) -> dict[str, Any]:
    """A ``text/event-stream`` response whose events each match ``frame`` (OpenAPI 3.2's
    ``itemSchema``)."""
    return {"text/event-stream": {"itemSchema": {"$ref": REF.format(model=frame)}}}


SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The run's events as server-sent events (`id`, `event`, `data` lines), "
        "with a comment heartbeat at least every 15 s.",
        "content": sse_content(STREAM_EVENT),
    }
}


def with_error_shape(operation: dict[str, Any]) -> None:
    """Every error of the operation in the one error shape (FastAPI's own 422 has another), and
    500 on every operation."""
    responses = operation.setdefault("responses", {})
    responses.setdefault("500", {"description": ERROR_DESCRIPTIONS[500]})
    for status, response in responses.items():
        if int(status) >= 400:
            response["content"] = ERROR_RESPONSE
            response.setdefault("description", ERROR_DESCRIPTIONS[int(status)])


def without_null(parameter: dict[str, Any]) -> None:
    """A query or header parameter is a string on the wire, or absent: never null (FastAPI
    writes an optional one as ``anyOf: [..., null]``)."""
    schema = parameter["schema"]
    kinds = schema.get("anyOf", [])
    if {"type": "null"} in kinds:
        kept = [kind for kind in kinds if kind != {"type": "null"}]
        del schema["anyOf"]
        schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


def openapi_document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(stream_schemas())
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path in schema["paths"].values():
        for operation in path.values():
            with_error_shape(operation)
            for parameter in operation.get("parameters", []):
                without_null(parameter)
    return schema
