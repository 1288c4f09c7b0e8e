"""Tracing end to end: `reasoner serve` with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans over
OTLP/HTTP to a collector of the test's own, continuing the trace of a caller's ``traceparent``."""

import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.stub_backend import StubBackend
from tests.support.runs import until
from tests.support.served import Served

WAITED = "4bf92f3577b34da6a3ce929d0e0e4736"
QUEUED = "5ce929d0e0e47364bf92f3577b34da6a"
PARENT = "00f067aa0ba902b7"


def caller(trace_id: str) -> dict[str, str]:
    """The headers of a caller whose span PARENT, in trace ``trace_id``, is sampled."""
    return {"traceparent": f"00-{trace_id}-{PARENT}-01"}


def values(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {kv.key: getattr(kv.value, str(kv.value.WhichOneof("value"))) for kv in pairs}


class Collector:
    """Receives OTLP/HTTP exports on /v1/traces: each span with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    resource = values(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        received.extend((resource, span) for span in scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def named(self, name: str) -> list[Span]:
        return [span for _, span in self.spans if span.name == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def ancestry(span: Span, spans: list[Span]) -> list[str]:
    """The names of the span's ancestors, nearest first, and the id of the remote parent at the top."""
    by_id = {s.span_id: s for s in spans}
    names: list[str] = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        names.append(span.name)
    return [*names, span.parent_span_id.hex()]


def test_a_callers_trace_goes_on_through_its_runs_and_is_flushed_at_shutdown(
    stub: StubBackend, collector: Collector, tmp_path: Path
) -> None:
    # A batch waits a minute: only the flush at shutdown can have sent the spans before the end.
    served = Served(
        stub, tmp_path / "data", otel_exporter_otlp_endpoint=collector.url, otel_bsp_schedule_delay=60_000
    )
    body = {"question": "How do tides work?", "max_revisions": 0}
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            waited = http.post("/v1/reason", json=body, headers=caller(WAITED)).json()
            untraced = http.post("/v1/reason", json=body).json()
            run_id = http.post("/v1/runs", json=body, headers=caller(QUEUED)).json()["run_id"]
            queued = until(lambda: http.get(f"/v1/runs/{run_id}").json()["result"], 30, "the run's result")
        assert not collector.spans
    finally:
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=30)
    assert (waited["trace_id"], queued["trace_id"]) == (WAITED, QUEUED)
    assert untraced["trace_id"] not in (None, WAITED, QUEUED)

    spans = [span for _, span in collector.spans]
    runs = {span.trace_id.hex(): span for span in collector.named("invoke_agent reasoner")}
    assert set(runs) == {WAITED, QUEUED, untraced["trace_id"]}
    # FastAPI's own spans: the request continues the caller's span, the run is the endpoint's child.
    assert ancestry(runs[WAITED], spans) == ["fastapi.endpoint", "POST /v1/reason", PARENT]
    assert ancestry(runs[QUEUED], spans) == ["fastapi.endpoint", "POST /v1/runs", PARENT], (
        "it outlived the request"
    )
    assert ancestry(runs[untraced["trace_id"]], spans) == ["fastapi.endpoint", "POST /v1/reason", ""]
    assert values(runs[WAITED].attributes)["reasoner.run_id"] == waited["run_id"]

    chats = [span for span in spans if span.trace_id.hex() == WAITED and span.name.startswith("chat ")]
    assert len(chats) == len(waited["calls"])
    for kind, field in (("input", "prompt_tokens"), ("output", "completion_tokens")):
        spent = sum(values(span.attributes)[f"gen_ai.usage.{kind}_tokens"] for span in chats)
        assert spent == sum(call[field] for call in waited["calls"])
    assert {resource["service.name"] for resource, _ in collector.spans} == {"reasoner"}
