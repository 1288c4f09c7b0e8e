"""One model call: the single retry loop, the call's ledger rows and structured-output parsing."""

import asyncio
import functools
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import openai
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from opentelemetry.trace import Span
from pydantic import BaseModel, ValidationError

from graph import tracing
from graph.budget import BudgetExhausted
from graph.calibration import TextSize, measure, measure_messages
from graph.context import RunContext
from graph.errors import ErrorKind, Fenced, ModelCallError
from graph.journal import IN_FLIGHT, Journal
from graph.ledger import CallRecord, NodeName
from graph.models import ModelSpec, StructuredOutput
from graph.prompts import REPAIR_USER
from graph.state import Fallback
from graph.tokens import estimate

T = TypeVar("T", bound=BaseModel)

MAX_RETRY_AFTER_S = 60.0

_jitter = random.Random()
"""Backoff jitter from a generator of its own: the process-wide one is left to its users."""


class _Failure(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retryable: bool,
        retry_after: float | None,
        status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code


class MalformedResponse(Exception):
    """The backend's response could not be read as a chat completion."""


READING_ERRORS = (openai.APIError, ValueError, LookupError, TypeError, AttributeError)
"""What the client libraries raise while reading a response they cannot make sense of."""

TRANSPORT_ERRORS = (openai.APIStatusError, openai.APIConnectionError, httpx.TransportError)
"""Failures to get a response at all (timeouts included), classified as they are."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        return None


def classify(exc: BaseException) -> _Failure:
    """Map an exception from the SDK or the transport to an error kind and a retry decision.

    Upstream text is never quoted in the message: it may echo anything, keys included.
    """
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
        return _Failure("upstream_timeout", "the model backend timed out", True, None)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return _Failure("upstream_unavailable", "could not connect to the model backend", True, None)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"the model backend answered HTTP {status}"
        if status in (401, 403):
            return _Failure(
                "upstream_auth", f"{detail}: the backend rejected the API key", False, None, status
            )
        if status == 429:
            return _Failure("upstream_rate_limited", detail, True, _retry_after(exc.response), status)
        if status in (408, 409) or status >= 500:
            return _Failure("upstream_unavailable", detail, True, _retry_after(exc.response), status)
        code = exc.code if isinstance(exc.code, str) and exc.code.isidentifier() else None
        message = detail + (f" ({code})" if code else "")
        return _Failure("upstream_bad_request", message, False, None, status, code)
    if isinstance(exc, MalformedResponse):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else str(exc)
        return _Failure("upstream_bad_response", f"malformed backend response ({cause})", True, None)
    return _Failure("internal_error", f"unexpected error ({type(exc).__name__})", False, None)


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


@contextmanager
def _reading_response() -> Iterator[None]:
    """What the client raises while reading a response it cannot make sense of is the
    backend's MalformedResponse; failures to get a response at all stay what they are."""
    try:
        yield
    except TRANSPORT_ERRORS:
        raise
    except READING_ERRORS as exc:
        raise MalformedResponse(type(exc).__name__) from exc


async def _invoke(
    spec: ModelSpec,
    messages: list[BaseMessage],
    kwargs: dict[str, Any],
    on_delta: Callable[[str], None] | None,
) -> AIMessage | AIMessageChunk:
    """One request. What goes wrong while the client reads the backend's response is a
    MalformedResponse; an error in our own code (``on_delta``) stays what it is."""
    if on_delta is None or not spec.stream:
        with _reading_response():
            result = await spec.chat.ainvoke(messages, **kwargs)
        if not isinstance(result, AIMessage):
            raise MalformedResponse(f"expected an AI message, got {type(result).__name__}")
        return result
    full: AIMessageChunk | None = None
    chunks = aiter(spec.chat.astream(messages, **kwargs))
    while True:
        try:
            with _reading_response():
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
                    failure = _Failure("deadline_exceeded", "the run's deadline has passed", False, None)
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
