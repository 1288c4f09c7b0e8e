"""Spans for tests: a provider of the test's own, recording in memory, and a trace as a tree."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import graph.tracing


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The engine's spans go to a provider of this block's own (the process's is left alone);
    the exporter holds each span the moment it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(graph.tracing, "tracer", provider.get_tracer(graph.tracing.AGENT))
    try:
        yield exporter
    finally:
        provider.shutdown()


def tokens(span: ReadableSpan) -> tuple[int, int]:
    """A chat span's input and output tokens; (0, 0) for any other."""
    attributes = span.attributes or {}
    return attributes.get("gen_ai.usage.input_tokens", 0), attributes.get("gen_ai.usage.output_tokens", 0)


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
        name = f"{span.name} {task}" if task and span.name.startswith("invoke_agent") else span.name
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        prompt, completion = total(span)
        error = f"  error: {attributes['error.type']}" if "error.type" in attributes else ""
        lines.append(
            f"{'  ' * depth}{name:<{44 - 2 * depth}} {ms:8.1f} ms  {prompt:>6} in {completion:>5} out{error}"
        )
        for child in children.get(span.context.span_id if span.context else None, []):
            draw(child, depth + 1)

    for root in roots:
        draw(root, 0)
    return "\n".join(lines)
