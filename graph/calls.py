"""One model call: the request, the single retry loop, and the call's ledger rows and journal entries."""

import asyncio
import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from opentelemetry.trace import Span

from graph import tracing
from graph.budget import BudgetExhausted
from graph.calibration import TextSize, measure, measure_messages
from graph.context import RunContext
from graph.errors import Failure, Fenced, MalformedResponse, ModelCallError, classify, reading_response
from graph.journal import IN_FLIGHT, Journal
from graph.ledger import CallRecord, NodeName
from graph.models import ModelSpec
from graph.tokens import estimate

_jitter = random.Random()
"""Backoff jitter from a generator of its own: the process-wide one is left to its users."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _backoff(ctx: RunContext, retry: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after
    ceiling = min(ctx.retry_max_s, ctx.retry_initial_s * 2**retry)
    return _jitter.uniform(ceiling / 2, ceiling)


def _cap_kwargs(spec: ModelSpec, max_tokens: int, response_format: dict[str, Any] | None) -> dict[str, Any]:
    """The output cap in the field the backend honours, and the response format.

    Both travel in ``extra_body``: passed as ``response_format`` the SDK would take its slower
    parse path and re-validate the schema on every call.
    """
    body: dict[str, Any] = {} if response_format is None else {"response_format": response_format}
    if spec.token_cap_param == "max_tokens":
        return {"extra_body": {**body, "max_tokens": max_tokens}}
    return {"max_completion_tokens": max_tokens, **({"extra_body": body} if body else {})}


async def _invoke(
    spec: ModelSpec,
    messages: list[BaseMessage],
    kwargs: dict[str, Any],
    on_delta: Callable[[str], None] | None,
) -> AIMessage | AIMessageChunk:
    """One request. What goes wrong while the client reads the backend's response is a
    MalformedResponse; an error in our own code (``on_delta``) stays what it is."""
    if on_delta is None or not spec.stream:
        with reading_response():
            result = await spec.chat.ainvoke(messages, **kwargs)
        if not isinstance(result, AIMessage):
            raise MalformedResponse(f"expected an AI message, got {type(result).__name__}")
        return result
    full: AIMessageChunk | None = None
    chunks = aiter(spec.chat.astream(messages, **kwargs))
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


async def call_text(
    spec: ModelSpec,
    messages: list[BaseMessage],
    ctx: RunContext,
    *,
    node: NodeName,
    task_id: str | None = None,
    attempt: int = 1,
    response_format: dict[str, Any] | None = None,
    on_delta: Callable[[str], None] | None = None,
) -> tuple[str, list[CallRecord]]:
    """Call the model with retries; every try is one ledger row, and one span (``graph.tracing``).

    ``attempt`` is the node's attempt at its task (a worker's revision is attempt 2, the
    critic's round n is attempt n), numbered as in the events; each row adds its ``retry``.

    A call that an earlier attempt of the run got an answer for (the run's journal) is not
    made again: its answer is returned, and streamed at once.

    Raises ModelCallError (with the rows spent) when the call fails for good, and Fenced,
    before the request goes out, when the run's fence says this process may not call any more.
    """
    replayed = ctx.journal.replay((node, task_id, attempt))
    if replayed is not None:
        text, done = replayed
        if on_delta is not None:
            on_delta(text)
        return text, [done]
    for_synthesis = node == "synthesizer"
    size = measure_messages(messages)
    rows: list[CallRecord] = []
    deltas = _Deltas(on_delta) if on_delta is not None else None
    for retry in range(ctx.max_attempts):
        if not ctx.fence():
            raise Fenced(node)
        if deltas is not None:
            deltas.new_attempt()
        time_left = _time_left(ctx, for_synthesis)
        if time_left is not None and time_left <= 0:
            raise ModelCallError("deadline_exceeded", "the run's deadline has passed", node)
        rates = spec.rates()
        prompt_cap = rates.prompt(size)
        try:
            cap = ctx.budget.reserve(prompt_cap, ctx.max_output_tokens, for_synthesis=for_synthesis)
        except BudgetExhausted as exc:
            raise ModelCallError("budget_exhausted", str(exc), node) from exc
        kwargs = _cap_kwargs(spec, cap, response_format)
        timeout = ctx.timeout_s if time_left is None else min(ctx.timeout_s, time_left)
        row = functools.partial(_row, spec, node, task_id, attempt, retry, _now(), time.perf_counter())
        in_flight = functools.partial(row, size.counted, estimated=True, error=IN_FLIGHT)
        seq = ctx.journal.started(in_flight(0))
        streamed = None if deltas is None else _Streamed(deltas, seq, in_flight, ctx.journal)
        with tracing.chat(spec.name, node, task_id, attempt, retry, cap) as span:
            try:
                async with asyncio.timeout(timeout):
                    message = await _invoke(spec, messages, kwargs, streamed)
            except asyncio.CancelledError:
                ctx.budget.settle(prompt_cap, cap, 0)
                _record(ctx, rows, seq, span, row(0, 0, False, "cancelled"))
                raise
            except Exception as exc:
                ctx.budget.settle(prompt_cap, cap, 0)
                failure = classify(exc)
                if failure.kind == "upstream_timeout" and timeout < ctx.timeout_s:
                    failure = Failure("deadline_exceeded", "the run's deadline has passed", False, None)
                _record(ctx, rows, seq, span, row(0, 0, False, failure.message))
                if failure.kind == "internal_error":
                    raise  # a bug here, not the backend's fault: never retried, never blamed upstream
                tracing.failed(span, failure.kind)
                if not failure.retryable or retry == ctx.max_attempts - 1:
                    raise ModelCallError(
                        failure.kind, failure.message, node, failure.status, failure.code
                    ) from exc
                backoff = _backoff(ctx, retry, failure.retry_after)
            else:
                text = message.text
                usage = message.usage_metadata
                if usage is not None and (usage["input_tokens"] or usage["output_tokens"]):
                    prompt, completion, estimated = usage["input_tokens"], usage["output_tokens"], False
                    _calibrate(spec, size, text, usage)
                else:  # what the budget reserved: the backend cannot have billed more
                    prompt, completion, estimated = prompt_cap, min(cap, rates.tokens(measure(text))), True
                ctx.budget.settle(prompt_cap, cap, prompt + completion)
                _record(ctx, rows, seq, span, row(prompt, completion, estimated, None), text)
                tracing.answered(span, message.response_metadata)
                return text, rows
        await asyncio.sleep(backoff)  # after the attempt's span: the wait is no part of it
    raise AssertionError("unreachable: max_attempts must be at least 1")


def _calibrate(spec: ModelSpec, prompt: TextSize, text: str, usage: UsageMetadata) -> None:
    """Learn the backend's ratio from the call's report: its prompt, and its visible output (a
    reasoning model's hidden tokens are no part of the text)."""
    spec.calibration.observe(spec.name, prompt, usage["input_tokens"])
    hidden = usage.get("output_token_details", {}).get("reasoning", 0)
    spec.calibration.observe(spec.name, measure(text), usage["output_tokens"] - hidden)


class _Deltas:
    """Forwards streamed text once: a retry that repeats what was already sent stays silent
    until it gets past it. A retry that says something else is not forwarded at all (what
    was sent cannot be taken back, and gluing two replies would make a third): the call's
    returned text is then the only whole reply."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        self.forward = forward
        self.sent = ""
        self.current = ""
        self.diverged = False

    def new_attempt(self) -> None:
        self.current = ""

    def __call__(self, piece: str) -> None:
        self.current += piece
        if self.diverged or self.sent.startswith(self.current):
            return
        if not self.current.startswith(self.sent):
            self.diverged = True
            return
        fresh, self.sent = self.current[len(self.sent) :], self.current
        self.forward(fresh)


PROGRESS_EVERY = 32
"""A streamed call's running count of completion tokens goes to the journal this often."""


class _Streamed:
    """Passes a call's streamed text on and, every ``PROGRESS_EVERY`` tokens (counted locally),
    writes the call's in-flight row again with them: a call cut by a crash is counted up to there."""

    def __init__(
        self, forward: Callable[[str], None], seq: int, row: Callable[[int], CallRecord], journal: Journal
    ) -> None:
        self.forward = forward
        self.seq = seq
        self.row = row
        self.journal = journal
        self.tokens = 0
        self.reported = 0

    def __call__(self, piece: str) -> None:
        self.forward(piece)
        self.tokens += estimate(piece)
        if self.tokens - self.reported >= PROGRESS_EVERY:
            self.reported = self.tokens
            self.journal.progress(self.seq, self.row(self.tokens))


def _record(
    ctx: RunContext, rows: list[CallRecord], seq: int, span: Span, row: CallRecord, output: str | None = None
) -> None:
    rows.append(row)
    ctx.ledger.append(row)
    ctx.journal.ended(seq, row, output)
    tracing.spent(span, row)


def _time_left(ctx: RunContext, for_synthesis: bool) -> float | None:
    """Seconds until this call's deadline; the synthesizer may use the time kept for it."""
    if ctx.deadline is None:
        return None
    keep = 0.0 if for_synthesis else ctx.synthesis_time_s
    return ctx.deadline - keep - time.monotonic()


def _row(
    spec: ModelSpec,
    node: NodeName,
    task_id: str | None,
    attempt: int,
    retry: int,
    started_at: str,
    t0: float,
    prompt: int,
    completion: int,
    estimated: bool,
    error: str | None,
) -> CallRecord:
    return CallRecord(
        node=node,
        task_id=task_id,
        attempt=attempt,
        retry=retry,
        model=spec.name,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        started_at=started_at,
        finished_at=_now(),
        latency_ms=round((time.perf_counter() - t0) * 1000, 2),
        error=error,
    )
