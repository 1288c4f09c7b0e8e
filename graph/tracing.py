"""OpenTelemetry spans after the GenAI semantic conventions, through the API only.

One ``invoke_agent reasoner`` span per run, one ``invoke_agent {node}`` per node execution
(planner, critic, reviser, synthesizer) and per worker task, one ``chat {model}`` per attempt
at a model call, with that attempt's tokens (its ledger row's) on it alone: summing
``gen_ai.usage.*`` over a trace counts every token once. A worker's tool calls are
``execute_tool {name}`` spans under its span. A worker's span is a child of the span
of the node whose dispatcher ran it (planner or reviser). A call that a resumed run replays from
its journal is not made again, and has no span. The spans go to the process's tracer provider:
a no-op one (nothing is recorded) unless the service installs the SDK's (``api.telemetry.otel``).
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, format_trace_id
from opentelemetry.util.types import AttributeValue

from graph.errors import ModelCallError
from graph.ledger import CallRecord
from graph.result import Result

AGENT = "reasoner"
PROVIDER = "openai"
"""The API every backend is spoken to in (OpenAI's own, or a server compatible with it)."""

tracer: trace.Tracer = trace.get_tracer(AGENT)
"""The process's provider's tracer; tests put one of their own provider's here."""

P = ParamSpec("P")
R = TypeVar("R")


def failed(span: Span, error_type: str) -> None:
    """The span's operation failed: ``error_type`` is low-cardinality (an error kind, a type)."""
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error_type)


@contextmanager
def _span(name: str, attributes: Mapping[str, AttributeValue], kind: SpanKind) -> Iterator[Span]:
    """A span, current in the block. A model failure is its ``error.type`` (the error's kind),
    any other exception its type; a cancellation is no error (``reasoner.cancelled``)."""
    with tracer.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except ModelCallError as exc:
            failed(span, exc.kind)
            raise
        except asyncio.CancelledError:
            span.set_attribute("reasoner.cancelled", True)
            raise
        except Exception as exc:
            failed(span, type(exc).__qualname__)
            raise


def agent(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> AbstractContextManager[Span]:
    """The span of one execution of the agent ``name``."""
    base = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
    return _span(f"invoke_agent {name}", {**base, **(attributes or {})}, SpanKind.INTERNAL)


def node(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Runs the decorated node in its agent span."""

    def decorate(run: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(run)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            with agent(name):
                return await run(*args, **kwargs)

        return traced

    return decorate


def run(execute: Callable[P, Awaitable[Result]]) -> Callable[P, Awaitable[Result]]:
    """Runs ``execute`` (``graph.run``'s: ``run_id`` and ``resume`` are keyword arguments) in the
    run's span; the result's status, and its error's kind, end up on it."""

    @functools.wraps(execute)
    async def traced(*args: P.args, **kwargs: P.kwargs) -> Result:
        run_id, resumed = str(kwargs["run_id"]), bool(kwargs.get("resume"))
        with agent(AGENT, {"reasoner.run_id": run_id, "reasoner.resumed": resumed}) as span:
            result = await execute(*args, **kwargs)
            span.set_attribute("reasoner.status", result["status"])
            if result["error"] is not None:
                failed(span, result["error"]["kind"])
        return result

    return traced


def chat(
    model: str, node: str, task_id: str | None, attempt: int, retry: int, max_tokens: int
) -> AbstractContextManager[Span]:
    """The span of one attempt of a model call."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
        "reasoner.node": node,
        "reasoner.attempt": attempt,
        "reasoner.retry": retry,
    }
    if task_id is not None:
        attributes["reasoner.task_id"] = task_id
    return _span(f"chat {model}", attributes, SpanKind.CLIENT)


def tool(name: str, call_id: str) -> AbstractContextManager[Span]:
    """The span of one tool call (``execute_tool {name}``); an outcome with an error is marked
    with ``tool_failed``."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
    }
    return _span(f"execute_tool {name}", attributes, SpanKind.INTERNAL)


def spent(span: Span, row: CallRecord) -> None:
    """The attempt's tokens, as its ledger row counts them."""
    span.set_attributes(
        {
            "gen_ai.usage.input_tokens": row["prompt_tokens"],
            "gen_ai.usage.output_tokens": row["completion_tokens"],
            "reasoner.usage.estimated": row["estimated"],
        }
    )


def answered(span: Span, metadata: Mapping[str, Any]) -> None:
    """What the response says of itself (langchain-openai's ``response_metadata``)."""
    if not span.is_recording():
        return
    if isinstance(model := metadata.get("model_name"), str):
        span.set_attribute("gen_ai.response.model", model)
    if isinstance(reason := metadata.get("finish_reason"), str):
        span.set_attribute("gen_ai.response.finish_reasons", [reason])
    if isinstance(response_id := metadata.get("id"), str):
        span.set_attribute("gen_ai.response.id", response_id)


def trace_id() -> str | None:
    """The current trace's id (32 hex digits) if the current span is recorded, else None."""
    span = trace.get_current_span()
    return format_trace_id(span.get_span_context().trace_id) if span.is_recording() else None
