"""`make bench`, observability: what metrics and tracing cost a run, against the engine's own
overhead per run with tracing off (wall minus the backend's critical path, as in 2.).

The engine in-process, 4 sub-questions, against the zero-latency stub in its own process:

1. the engine's own overhead per run with tracing off (the default: no SDK provider, the API's
   no-op spans) and on (the SDK's provider with a BatchSpanProcessor and the OTLP/HTTP exporter,
   as ``api.telemetry.otel`` installs it, exporting to a collector of this module's own on loopback, in
   a process of its own), the two interleaved run by run, each first in every other pair.
   Tracing on is a provider of this section's own whose tracer is put in
   ``graph.tracing.tracer``, as the tests do (the process's provider is left alone). The pairs'
   differences are reported with their quartiles: a difference of a millisecond or two is
   within the spread of runs of ~40 ms, so tracing on is also costed from its parts (2.);
2. each kind of span timed as the engine opens it, with the SDK (its batching processor handing
   the spans to an exporter that discards them) and with the no-op API, times the spans of a
   run (counted by the collector by name); and the exporter's CPU in its own thread per traced
   run (the batches rarely fall in the runs that make the p50). Tracing on over off: the SDK's
   spans less the no-op ones, plus the export;
3. ``Metrics.run_ended`` over the runs' real results, with a price for every model.

The bar: metrics + the no-op spans under 5 % of the engine's own overhead with tracing off.

Alone: ``python -m tests.bench.observability`` (prints the table, leaves results.json as it is).
"""

import asyncio
import gzip
import json
import statistics
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, cast

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

from api.backend.embedded import free_port
from api.telemetry.metrics import Metrics
from api.telemetry.otel import resource
from graph import Price, Result, tracing
from tests.bench.harness import QUICK, calls, critical_path, engine, engine_run, process, reset, stub
from tests.stub_backend import ROLES, model_name

SUBTASKS = 4
PRICE = Price(input=0.15, output=0.6)
"""Every model priced: ``run_ended`` adds each call's cost too."""
METADATA = {"model_name": model_name("worker"), "finish_reason": "stop", "id": "chatcmpl-bench"}
"""A response's metadata as langchain-openai gives it (what ``tracing.answered`` reads)."""


# the collector --------------------------------------------------------------------------------


class Collector(BaseHTTPRequestHandler):
    """OTLP/HTTP: answers POST /v1/traces with 200 and counts the spans by name; GET /spans
    gives the counts, any other GET answers (it is up)."""

    names: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        names = [s.name for r in request.resource_spans for scope in r.scope_spans for s in scope.spans]
        with self.lock:
            self.names.update(names)
        self.reply(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self) -> None:
        with self.lock:
            counts = dict(self.names)
        self.reply(json.dumps(counts if self.path == "/spans" else {}).encode(), "application/json")

    def reply(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def collect(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Collector).serve_forever()


class TimedExporter(SpanExporter):
    """The exporter, with the CPU its thread spends in it and the spans it was given."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.cpu_s = 0.0
        self.spans = 0
        self.batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        c0 = time.thread_time()
        try:
            return self.inner.export(spans)
        finally:
            self.cpu_s += time.thread_time() - c0
            self.spans += len(spans)
            self.batches += 1

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# the spans' own cost -------------------------------------------------------------------------


def sync_us(block: Callable[[], None], n: int) -> float:
    """µs per call of ``block``: the median of 7 rounds of ``n`` calls."""
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            block()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


async def async_us(
    wrapped: Callable[..., Awaitable[Any]], plain: Callable[..., Awaitable[Any]], n: int
) -> float:
    """µs per call that ``wrapped`` takes over ``plain`` (each awaited ``n`` times a round, the
    two interleaved round by round): the median of 7 rounds' differences."""
    diffs = []
    for _ in range(7):
        times = []
        for fn in (wrapped, plain):
            t0 = time.perf_counter()
            for _ in range(n):
                await fn(run_id="bench")
            times.append((time.perf_counter() - t0) / n * 1e6)
        diffs.append(times[0] - times[1])
    return statistics.median(diffs)


class Discard(SpanExporter):
    """Takes the spans and does nothing: the SDK's spans timed without their export."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def span_us(result: Any, tracer: Tracer, n: int) -> dict[str, float]:
    """µs of each kind of span with ``tracer``, opened as the engine opens it: the run's
    (``tracing.run`` and the ``trace_id()`` of its result), and inside it a node's
    (``tracing.node``), a worker's (``tracing.agent``) and a model call's (``tracing.chat``
    with ``spent`` and ``answered``)."""
    row = result["calls"][0]

    def worker() -> None:
        with tracing.agent("worker", {"reasoner.task_id": "t1", "reasoner.attempt": 1}):
            pass

    def chat() -> None:
        with tracing.chat(row["model"], "worker", "t1", 1, 0, 512) as span:
            tracing.spent(span, row)
            tracing.answered(span, METADATA)

    async def plain(run_id: str) -> Result:
        return cast(Result, result)

    async def execute(run_id: str) -> Result:
        tracing.trace_id()
        return cast(Result, result)

    async def main() -> dict[str, float]:
        out = {"run": await async_us(tracing.run(execute), plain, n)}
        with tracing.agent(tracing.AGENT):
            out["node"] = await async_us(tracing.node("planner")(plain), plain, n)
            out["worker"] = sync_us(worker, n)
            out["chat"] = sync_us(chat, n)
        return out

    previous, tracing.tracer = tracing.tracer, tracer
    try:
        return asyncio.run(main())
    finally:
        tracing.tracer = previous


def span_kind(name: str) -> str:
    if name.startswith("chat "):
        return "chat"
    return {"invoke_agent reasoner": "run", "invoke_agent worker": "worker"}.get(name, "node")


# the section ----------------------------------------------------------------------------------


def observability(report: dict[str, Any]) -> None:
    warmup, runs = (2, 10) if QUICK else (5, 60)
    port = free_port()
    collector = ["-m", "tests.bench.observability", "--collector", str(port)]
    with stub(0.0) as backend, process(collector, f"http://127.0.0.1:{port}/"):
        exporter = TimedExporter(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
        provider = TracerProvider(resource=resource())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracers = {"off": tracing.tracer, "on": provider.get_tracer(tracing.AGENT)}
        samples: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        paired: list[float] = []
        paired_cpu: list[float] = []
        results: list[Any] = []

        async def main() -> None:
            graph = engine(backend)
            for i in range(warmup + runs):
                overhead, cpu_s = {}, {}
                for variant in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    reset(backend)
                    tracing.tracer = tracers[variant]
                    try:
                        t0, c0 = time.perf_counter(), time.process_time()
                        result = await engine_run(graph, SUBTASKS)
                        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    finally:
                        tracing.tracer = tracers["off"]
                    assert (result["trace_id"] is not None) == (variant == "on"), "traced only when on"
                    overhead[variant] = wall - critical_path(calls(backend))
                    cpu_s[variant] = cpu
                    results.append(result)
                    if i >= warmup:
                        samples[variant].append((overhead[variant] * 1000, cpu * 1000))
                if i >= warmup:
                    paired.append((overhead["on"] - overhead["off"]) * 1000)
                    paired_cpu.append((cpu_s["on"] - cpu_s["off"]) * 1000)

        try:
            asyncio.run(main())
            assert provider.force_flush(30000), "the spans were exported"
        finally:
            provider.shutdown()
        names: dict[str, int] = httpx.get(f"http://127.0.0.1:{port}/spans").json()
    traced = warmup + runs
    received = sum(names.values())
    assert received == exporter.spans, f"the collector got every span ({received} of {exporter.spans})"
    kinds: Counter[str] = Counter()
    for name, count in names.items():
        kinds[span_kind(name)] += count
    per_run = {kind: kinds[kind] / traced for kind in ("run", "node", "worker", "chat")}

    metrics, prices = Metrics(), {model_name(role): PRICE for role in ROLES}
    rounds = []
    for _ in range(10 if QUICK else 50):
        t0 = time.perf_counter()
        for result in results:
            metrics.run_ended("completed", result, prices)
        rounds.append((time.perf_counter() - t0) / len(results) * 1e6)
    metrics_us = statistics.median(rounds)

    assert not tracing.tracer.start_span("probe").is_recording(), "no SDK provider: the spans are no-ops"
    noop = span_us(results[0], tracing.tracer, 5000 if QUICK else 20000)
    sdk_provider = TracerProvider(resource=resource())
    sdk_provider.add_span_processor(BatchSpanProcessor(Discard()))
    try:
        sdk = span_us(results[0], sdk_provider.get_tracer(tracing.AGENT), 500 if QUICK else 2000)
    finally:
        sdk_provider.shutdown()
    noop_us = sum(per_run[kind] * noop[kind] for kind in per_run)
    sdk_us = sum(per_run[kind] * sdk[kind] for kind in per_run)
    export_ms = exporter.cpu_s / traced * 1000
    on_ms = (sdk_us - noop_us) / 1000 + export_ms
    off_ms = statistics.median(s[0] for s in samples["off"])
    q1, _, q3 = statistics.quantiles(paired, n=4)

    def share(ms: float) -> float:
        return ms / off_ms * 100

    report["observability"] = {
        "subtasks": SUBTASKS,
        "runs": runs,
        "warmup": warmup,
        "engine_off_ms": off_ms,
        "engine_on_ms": statistics.median(s[0] for s in samples["on"]),
        "cpu_off_ms": statistics.median(s[1] for s in samples["off"]),
        "cpu_on_ms": statistics.median(s[1] for s in samples["on"]),
        "paired_added_ms": statistics.median(paired),
        "paired_added_q1_ms": q1,
        "paired_added_q3_ms": q3,
        "paired_added_cpu_ms": statistics.median(paired_cpu),
        "spans_per_run": received / traced,
        "spans_by_kind_per_run": per_run,
        "sdk_us_per_span": sdk,
        "sdk_us_per_run": sdk_us,
        "export_cpu_ms_per_run": export_ms,
        "export_batches": exporter.batches,
        "tracing_on_ms": on_ms,
        "tracing_on_pct": share(on_ms),
        "calls_per_run": statistics.median(len(r["calls"]) for r in results),
        "metrics_us_per_run": metrics_us,
        "metrics_pct": share(metrics_us / 1000),
        "noop_us_per_span": noop,
        "noop_us_per_run": noop_us,
        "noop_pct": share(noop_us / 1000),
        "metrics_noop_pct": share((metrics_us + noop_us) / 1000),
        "below_5pct": share((metrics_us + noop_us) / 1000) < 5,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--collector"]:
        collect(int(sys.argv[2]))
    else:
        from tests.bench.report import print_observability

        alone: dict[str, Any] = {}
        t0 = time.perf_counter()
        observability(alone)
        print(f"[observability done in {time.perf_counter() - t0:.0f} s]")
        print_observability(alone)
