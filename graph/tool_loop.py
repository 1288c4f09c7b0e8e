"""A worker that acts: it calls its model with the run's tools, runs the tools the reply asks
for, gives the model their outcomes and calls it again, until it answers.

Every model call in the loop is a ledger row of its own (node ``worker``, its task, attempt and
``step``), so budgets, deadlines, cancellation and the journal hold through it as for any call.
After ``max_tool_calls`` tool calls the model is called without tools and must answer. Each
tool outcome is written into the journal entry of the reply that asked for it the moment it
is known, so a resumed run does not call again a tool whose outcome it holds.
"""

import json
from collections.abc import Callable

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from graph import tracing
from graph.calls import Answered, call_turn
from graph.context import RunContext
from graph.errors import ModelCallError
from graph.events import TOOL_CALLED, TOOL_RESULT, ProgressEvent, ToolCalled, ToolResult
from graph.ledger import CallRecord
from graph.models import ModelSpec
from graph.prompts import tool_output
from graph.state import Fallback, SubTask
from graph.tools import ToolOutcome, ToolRequest, Tools, Turn, cut, invoke

StreamWriter = Callable[[ProgressEvent], None]


async def answer_with_tools(
    spec: ModelSpec,
    ctx: RunContext,
    emit: StreamWriter,
    messages: list[BaseMessage],
    fallbacks: list[Fallback],
    *,
    task: SubTask,
    attempt: int,
) -> tuple[str, list[CallRecord]]:
    """The worker's answer and every row its calls spent. Raises ModelCallError as
    ``call_text`` does, when a model call fails for good. A backend that rejects tools is
    remembered (``ModelSpec.tool_support``) and the worker answers without them, which goes
    into ``fallbacks`` once per run. The worker is offered the tools the plan named for its task,
    or every tool of the run where it named none."""
    task_id = task["id"]
    named = {name: ctx.tools[name] for name in task.get("tools", []) if name in ctx.tools}
    loop = _Loop(ctx, named or ctx.tools, emit, task_id, attempt)
    tools = list(loop.tools.values())
    rows: list[CallRecord] = []
    step = 0
    while True:
        usable = not spec.tool_support.rejected
        offered = tools if loop.calls_left and usable else []
        if not usable:
            _without_tools(fallbacks, spec.name)
        try:
            answered, spent = await call_turn(
                spec, messages, ctx, offered, task_id=task_id, attempt=attempt, step=step
            )
        except ModelCallError as exc:
            if not offered or exc.kind != "upstream_bad_request":
                raise
            spec.tool_support.reject(spec.name, exc.message)
            continue
        rows += spent
        turn = answered.turn or Turn(answered.text, [])
        if not turn.requests or not offered:
            return turn.text, rows
        messages = [*messages, _asked(turn)]
        for request in turn.requests:
            outcome = await loop.outcome(answered, turn, step, request)
            messages.append(
                ToolMessage(tool_output(request.name, outcome.result, outcome.error), tool_call_id=request.id)
            )
        step += 1


class _Loop:
    """The tool calls of one task's attempt: how many are left, and each one run, announced and
    journaled."""

    def __init__(self, ctx: RunContext, tools: Tools, emit: StreamWriter, task_id: str, attempt: int) -> None:
        self.ctx = ctx
        self.tools = tools
        self.emit = emit
        self.task_id = task_id
        self.attempt = attempt
        self.calls_left = ctx.max_tool_calls

    async def outcome(self, answered: Answered, turn: Turn, step: int, request: ToolRequest) -> ToolOutcome:
        """The outcome of one requested call: the journal's if an earlier execution of the run got
        it, else the tool's (or an error, when the request cannot be run)."""
        known = turn.outcomes.get(request.id)
        if known is not None:
            self.calls_left -= 1
            return known
        if self.calls_left <= 0:
            limit = f"no tool calls are left for this task ({self.ctx.max_tool_calls} were made)"
            return ToolOutcome(result="", error=limit, duration_ms=0.0)
        self.calls_left -= 1
        arguments = cut(json.dumps(request.arguments), self.ctx.tool_result_chars)
        called = ToolCalled(
            task_id=self.task_id,
            attempt=self.attempt,
            step=step,
            call_id=request.id,
            name=request.name,
            arguments=arguments,
        )
        self.emit(ProgressEvent(event=TOOL_CALLED, data=called))
        with tracing.tool(request.name, request.id) as span:
            if request.error is not None:
                outcome = ToolOutcome(result="", error=request.error, duration_ms=0.0)
            else:
                outcome = await invoke(
                    self.tools,
                    request.name,
                    request.arguments,
                    timeout_s=self.ctx.tool_timeout_s,
                    max_chars=self.ctx.tool_result_chars,
                )
            if outcome.error is not None:
                tracing.failed(span, "tool_error")
        turn.outcomes[request.id] = outcome
        self.ctx.journal.ended(answered.seq, answered.row, turn.dump())
        result = ToolResult(
            task_id=self.task_id,
            attempt=self.attempt,
            step=step,
            call_id=request.id,
            name=request.name,
            result=outcome.result,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
        self.emit(ProgressEvent(event=TOOL_RESULT, data=result))
        return outcome


def _without_tools(fallbacks: list[Fallback], model: str) -> None:
    if not any(f["kind"] == "no_tools" for f in fallbacks):
        detail = f"{model} rejected tool calls: the workers answered without tools"
        fallbacks.append(Fallback(node="worker", kind="no_tools", detail=detail))


def _asked(turn: Turn) -> AIMessage:
    """The reply that asked for tools, as the model sent it (the next call's context)."""
    calls = [{"id": r.id, "name": r.name, "args": r.arguments, "type": "tool_call"} for r in turn.requests]
    return AIMessage(content=turn.text, tool_calls=calls)
