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

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

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
