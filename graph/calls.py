"""One model call: the retry loop in a few named steps, and the call's ledger rows and journal entries."""

import asyncio
import functools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import RunnableConfig
from opentelemetry.trace import Span

from graph import tracing
from graph.budget import BudgetExhausted, Reservation
from graph.calibration import Rates, TextSize, measure, measure_messages, measure_repeated
from graph.call_request import request_options, send
from graph.context import RunContext
from graph.deltas import Deltas, Streamed
from graph.errors import Failure, Fenced, ModelCallError, classify
from graph.journal import IN_FLIGHT
from graph.ledger import CallRecord, NodeName
from graph.models import ModelSpec
from graph.tools import Tool, Turn, requests_of

_jitter = random.Random()
"""Backoff jitter from a generator of its own: the process-wide one is left to its users."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _backoff(ctx: RunContext, retry: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after
    ceiling = min(ctx.retry_max_s, ctx.retry_initial_s * 2**retry)
    return _jitter.uniform(ceiling / 2, ceiling)


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
        text = replayed.output or ""
        if on_delta is not None:
            on_delta(text)
        return text, [replayed.row]
    call = _Call(spec, messages, ctx, node, task_id, attempt, response_format, on_delta)
    answered, rows = await call.run()
    return answered.text, rows


@dataclass(frozen=True)
class Answered:
    """A call's reply as its journal entry ``seq`` keeps it: the final ``row``, and the turn
    when the call offered tools."""

    text: str
    seq: int
    row: CallRecord
    turn: Turn | None = None


async def call_turn(
    spec: ModelSpec,
    messages: list[BaseMessage],
    ctx: RunContext,
    tools: list[Tool],
    *,
    task_id: str,
    attempt: int,
    step: int,
) -> tuple[Answered, list[CallRecord]]:
    """A worker's call in its tool loop, offered ``tools`` (none: it must answer), like
    ``call_text`` otherwise. The reply's turn holds the tools it asked for; replayed from the
    journal, also the outcomes of the calls made before the run was resumed."""
    replayed = ctx.journal.replay(("worker", task_id, attempt))
    if replayed is not None:
        row = replayed.row
        output = replayed.output or ""
        turn = Turn.load(output) if "tool_calls" in row else Turn(output, [])
        return Answered(turn.text, replayed.seq, row, turn), [row]
    schemas = [tool.openai_schema() for tool in tools]
    call = _Call(spec, messages, ctx, "worker", task_id, attempt, None, None, schemas, step)
    return await call.run()


@dataclass(frozen=True)
class _Try:
    """One try of a call: its number, what the budget reserved for it, its time limit, and its
    row (a function of what it spent) under its journal entry ``seq``."""

    retry: int
    rates: Rates
    prompt_cap: int
    held: Reservation
    timeout: float
    row: Callable[..., CallRecord]
    seq: int
    on_delta: Callable[[str], None] | None


class _Call:
    """The tries of one ``call_text`` call, and the rows they have spent so far."""

    def __init__(
        self,
        spec: ModelSpec,
        messages: list[BaseMessage],
        ctx: RunContext,
        node: NodeName,
        task_id: str | None,
        attempt: int,
        response_format: dict[str, Any] | None,
        on_delta: Callable[[str], None] | None,
        tools: list[dict[str, Any]] | None = None,
        step: int | None = None,
    ) -> None:
        self.spec = spec
        self.messages = messages
        self.ctx = ctx
        self.node: NodeName = node
        self.task_id = task_id
        self.attempt = attempt
        self.response_format = response_format
        self.tools = tools
        self.step = step
        self.for_synthesis = node == "synthesizer"
        self.answer = node == "worker"
        self.size = measure_messages(messages)
        if tools:
            self.size += measure_repeated(json.dumps(tools))
        self.rows: list[CallRecord] = []
        self.deltas = Deltas(on_delta) if on_delta is not None else None

    async def run(self) -> tuple[Answered, list[CallRecord]]:
        """Try until the model answers, the call fails for good or the tries run out."""
        for retry in range(self.ctx.max_attempts):
            await self.ctx.budget.room(
                self.spec.rates().prompt(self.size),
                self.ctx.max_output_tokens,
                for_synthesis=self.for_synthesis,
                model=self.spec.name,
                answer=self.answer,
            )
            step = self._begin(retry)
            with tracing.chat(
                self.spec.name, self.node, self.task_id, self.attempt, retry, step.held.cap
            ) as span:
                try:
                    message = await self._send(step)
                except asyncio.CancelledError:
                    self._end_unanswered(step, span, "cancelled")
                    raise
                except Exception as exc:
                    failure = self._failed(step, span, exc)
                    if failure.kind == "internal_error":
                        raise  # a bug here, not the backend's fault: never retried, never blamed upstream
                    backoff = self._backoff_or_give_up(step, span, failure, exc)
                else:
                    return self._answered(step, span, message), self.rows
            await asyncio.sleep(backoff)  # after the attempt's span: the wait is no part of it
        raise AssertionError("unreachable: max_attempts must be at least 1")

    def _begin(self, retry: int) -> _Try:
        """Check that the try may go out, reserve its budget and enter it in the journal."""
        time_left = self._time_left_to_call()
        rates = self.spec.rates()
        prompt_cap = rates.prompt(self.size)
        held = self._reserve(prompt_cap)
        timeout = self.ctx.timeout_s if time_left is None else min(self.ctx.timeout_s, time_left)
        row = functools.partial(
            _row,
            self.spec,
            self.node,
            self.task_id,
            self.attempt,
            retry,
            self.step,
            _now(),
            time.perf_counter(),
        )
        in_flight = functools.partial(row, self.size.counted, estimated=True, error=IN_FLIGHT)
        seq = self.ctx.journal.started(in_flight(0))
        streamed = None
        if self.deltas is not None:
            self.deltas.new_attempt()
            streamed = Streamed(self.deltas, seq, in_flight, self.ctx.journal)
        return _Try(retry, rates, prompt_cap, held, timeout, row, seq, streamed)

    def _time_left_to_call(self) -> float | None:
        """Seconds until this call's deadline (None: no deadline); the synthesizer may use the
        time kept for it. Raises Fenced if this process may not call any more, and
        ModelCallError if the deadline has passed."""
        if not self.ctx.fence():
            raise Fenced(self.node)
        if self.ctx.deadline is None:
            return None
        keep = 0.0 if self.for_synthesis else self.ctx.synthesis_time_s
        time_left = self.ctx.deadline - keep - time.monotonic()
        if time_left <= 0:
            raise ModelCallError("deadline_exceeded", "the run's deadline has passed", self.node)
        return time_left

    def _reserve(self, prompt_cap: int) -> Reservation:
        """What the budget holds for this try, with the output cap it grants."""
        try:
            return self.ctx.budget.reserve(
                prompt_cap,
                self.ctx.max_output_tokens,
                for_synthesis=self.for_synthesis,
                model=self.spec.name,
                answer=self.answer,
            )
        except BudgetExhausted as exc:
            raise ModelCallError("budget_exhausted", str(exc), self.node) from exc

    async def _send(self, step: _Try) -> AIMessage | AIMessageChunk:
        kwargs = request_options(self.spec, step.held.cap, self.response_format)
        if self.tools:
            kwargs["tools"] = self.tools
        async with asyncio.timeout(step.timeout):
            return await send(self.spec, self.messages, kwargs, step.on_delta, self._config())

    def _config(self) -> RunnableConfig:
        """The call's metadata in LangGraph's stream: its ledger node, not the graph node it runs
        in (a worker runs in the planner or the reviser), and a worker's task."""
        metadata: dict[str, Any] = {"langgraph_node": self.node}
        if self.task_id is not None:
            metadata |= {"task_id": self.task_id, "attempt": self.attempt}
        return {"metadata": metadata}

    def _answered(self, step: _Try, span: Span, message: AIMessage | AIMessageChunk) -> Answered:
        """Settle the budget at what the backend reported (or, if it reported nothing, at what
        was reserved), record the row and return the reply."""
        text = message.text
        usage = message.usage_metadata
        if usage is not None and (usage["input_tokens"] or usage["output_tokens"]):
            prompt, completion, estimated = usage["input_tokens"], usage["output_tokens"], False
            _calibrate(self.spec, self.size, text, usage)
        else:  # what the budget reserved: the backend cannot have billed more
            prompt, estimated = step.prompt_cap, True
            completion = min(step.held.cap, step.rates.tokens(measure(text)))
        self.ctx.budget.settle(step.held, prompt + completion, completion)
        row = step.row(prompt, completion, estimated, None)
        turn = None if self.tools is None else Turn(text, requests_of(message))
        if turn is not None and turn.requests:
            row["tool_calls"] = [r.name for r in turn.requests]
        self._record(step, span, row, turn.dump() if turn is not None and turn.requests else text)
        tracing.answered(span, message.response_metadata)
        return Answered(text, step.seq, row, turn)

    def _failed(self, step: _Try, span: Span, exc: Exception) -> Failure:
        """Classify the try's failure and record it; a timeout cut short by the run's deadline
        is the deadline's."""
        failure = classify(exc)
        if failure.kind == "upstream_timeout" and step.timeout < self.ctx.timeout_s:
            failure = Failure("deadline_exceeded", "the run's deadline has passed", False, None)
        self._end_unanswered(step, span, failure.message)
        return failure

    def _backoff_or_give_up(self, step: _Try, span: Span, failure: Failure, exc: Exception) -> float:
        """Seconds to wait before the next try; raises ModelCallError if there is none."""
        tracing.failed(span, failure.kind)
        if not failure.retryable or step.retry == self.ctx.max_attempts - 1:
            raise ModelCallError(
                failure.kind, failure.message, self.node, failure.status, failure.code
            ) from exc
        return _backoff(self.ctx, step.retry, failure.retry_after)

    def _end_unanswered(self, step: _Try, span: Span, error: str) -> None:
        """Give the try's reservation back and record it as spending nothing."""
        self.ctx.budget.settle(step.held, 0)
        self._record(step, span, step.row(0, 0, False, error))

    def _record(self, step: _Try, span: Span, row: CallRecord, output: str | None = None) -> None:
        self.rows.append(row)
        self.ctx.ledger.append(row)
        self.ctx.journal.ended(step.seq, row, output)
        tracing.spent(span, row)


def _calibrate(spec: ModelSpec, prompt: TextSize, text: str, usage: UsageMetadata) -> None:
    """Learn the backend's ratio from the call's report: its prompt, and its visible output (a
    reasoning model's hidden tokens are no part of the text)."""
    spec.calibration.observe(spec.name, prompt, usage["input_tokens"])
    hidden = usage.get("output_token_details", {}).get("reasoning", 0)
    spec.calibration.observe(spec.name, measure(text), usage["output_tokens"] - hidden)


def _row(
    spec: ModelSpec,
    node: NodeName,
    task_id: str | None,
    attempt: int,
    retry: int,
    step: int | None,
    started_at: str,
    t0: float,
    prompt: int,
    completion: int,
    estimated: bool,
    error: str | None,
) -> CallRecord:
    row = CallRecord(
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
    if step is not None:
        row["step"] = step
    return row
