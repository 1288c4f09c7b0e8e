"""Tracing: the OpenTelemetry SDK, exporting over OTLP/HTTP.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; then, while
the app runs, the SDK's tracer provider with a batching processor is the process's, and is
flushed when the app shuts down. The SDK reads the other standard variables itself, from the
environment (not from ``.env``): OTEL_SERVICE_NAME ("reasoner" unless set),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its argument, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_BSP_*...

The run's spans are ``graph.tracing``'s. FastAPI's own telemetry, on as soon as the process has
a provider, makes each request a server span that continues the caller's trace (its W3C
``traceparent``); a run that a request submits is executed by a task created while the request
is handled, which copies its context: the run's span is a child of the request's. A run taken
up from the store (resumed, or claimed from the queue on a shared store) starts a trace of its own.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import graph.tracing
from api.settings import Settings

SERVICE = "reasoner"


def traces_endpoint(settings: Settings) -> str | None:
    """Where spans go (the traces endpoint as it is, or the base one's /v1/traces, as the SDK
    resolves them), or None: tracing is off."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return f"{settings.otel_exporter_otlp_endpoint.removesuffix('/')}/v1/traces"
    return None


def resource() -> Resource:
    """The SDK's resource (from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES), named
    "reasoner" where they name no service."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return found.merge(Resource({SERVICE_NAME: SERVICE}))
    return found


@contextmanager
def tracing(settings: Settings) -> Iterator[None]:
    """The SDK's provider, exporting to the settings' endpoint, as the process's for the block;
    shut down (its spans flushed) at the end. Nothing without an endpoint."""
    endpoint = traces_endpoint(settings)
    if endpoint is None:
        yield
        return
    provider = TracerProvider(resource=resource())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()


@contextmanager
def recorded() -> Iterator[InMemorySpanExporter]:
    """The engine's spans of this block go to a provider of its own, kept in memory (the
    process's provider is left alone): for `reasoner ask --trace`, and tests."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous, graph.tracing.tracer = graph.tracing.tracer, provider.get_tracer(graph.tracing.AGENT)
    try:
        yield exporter
    finally:
        graph.tracing.tracer = previous
        provider.shutdown()


def tokens(span: ReadableSpan) -> tuple[int, int]:
    """A chat span's input and output tokens; (0, 0) for any other."""
    attributes = span.attributes or {}
    found = (attributes.get("gen_ai.usage.input_tokens", 0), attributes.get("gen_ai.usage.output_tokens", 0))
    return tuple(value if isinstance(value, int) else 0 for value in found)  # type: ignore[return-value]


def tree(spans: Sequence[ReadableSpan]) -> str:
    """A trace as an indented tree, children in the order they started: each span's name (a
    worker's with its task), duration, and the tokens of the model calls at or below it."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    known = {s.context.span_id for s in spans if s.context is not None}
    roots = [s for p, kids in children.items() if p is None or p not in known for s in kids]

    def total(span: ReadableSpan) -> tuple[int, int]:
        below = [total(c) for c in children.get(span.context.span_id if span.context else None, [])]
        own = tokens(span)
        return own[0] + sum(b[0] for b in below), own[1] + sum(b[1] for b in below)

    lines: list[str] = []

    def draw(span: ReadableSpan, depth: int) -> None:
        attributes = span.attributes or {}
        task = attributes.get("reasoner.task_id")
        name = f"{span.name} {task!s}" if task and span.name.startswith("invoke_agent") else span.name
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        prompt, completion = total(span)
        error = f"  error: {attributes['error.type']!s}" if "error.type" in attributes else ""
        lines.append(
            f"{'  ' * depth}{name:<{44 - 2 * depth}} {ms:8.1f} ms  {prompt:>6} in {completion:>5} out{error}"
        )
        for child in children.get(span.context.span_id if span.context else None, []):
            draw(child, depth + 1)

    for root in roots:
        draw(root, 0)
    return "\n".join(lines)
