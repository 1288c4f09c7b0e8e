"""The agents. Each node reads the state, calls its model through ``graph.calls`` (which
records every attempt in the run's ledger), applies a pure decision (``graph.plan``,
``graph.scheduling``, ``graph.review``) and returns only what it changed. Progress goes out
through the stream writer. Workers (``graph.subanswers``) are run by a ``Dispatcher`` inside the
planner and reviser nodes, each the moment its dependencies have answers. The synthesizer, the
last, leaves the ledger's accounts in the state."""

from typing import Any

from langgraph.runtime import Runtime

from graph import tracing
from graph.budget import synthesis_cost
from graph.calibration import TextSize, measure
from graph.calls import call_text
from graph.context import RunContext
from graph.dispatch import Dispatcher
from graph.errors import ErrorKind, ModelCallError
from graph.events import (
    ANSWER_DELTA,
    CRITIQUE,
    PLAN,
    PLAN_TASK,
    STAGE,
    AnswerDelta,
    CritiqueMade,
    PlanMade,
    PlanTask,
    ProgressEvent,
    Stage,
    StageStarted,
)
from graph.ledger import Accounts, accounts
from graph.models import Models
from graph.plan import PlanReader
from graph.prompts import (
    critic_messages,
    planner_messages,
    synthesizer_messages,
    unsynthesized_answer,
)
from graph.review import failed_revisions, revisions_asked, verdicts_for
from graph.scheduling import dependents
from graph.schemas import Critique, Plan, critique_schema, plan_schema
from graph.state import Fallback, InputState, State, SubAnswer, SubTask
from graph.structured import call_structured
from graph.subanswers import answer_task, blocked_answer
from graph.tokens import TiktokenCounter, TokenCounter

LIMITS: dict[ErrorKind, str] = {
    "budget_exhausted": "the run's token budget ran out",
    "deadline_exceeded": "the run's deadline passed",
}
"""Failures that come from the run's own limits, not from the backend."""


def _stage(stage: Stage, round_: int | None = None) -> ProgressEvent:
    return ProgressEvent(event=STAGE, data=StageStarted(stage=stage, round=round_))


def _in_plan_order(state: State) -> list[SubAnswer]:
    """The answers so far, in plan order (they arrive in the order the workers finish)."""
    return [state["subanswers"][t["id"]] for t in state["plan"] if t["id"] in state["subanswers"]]


class Nodes:
    """The graph's nodes, bound to the models they call and to what counts the question's tokens
    in the run's accounts (by default cl100k_base, as the service counts without a llama.cpp
    tokenizer)."""

    def __init__(self, models: Models, counter: TokenCounter | None = None) -> None:
        self.models = models
        self.counter = counter or TiktokenCounter(models.synthesizer.name)

    async def _accounts(self, question: str, ctx: RunContext) -> Accounts:
        count = await self.counter.count(question)
        return accounts(ctx.ledger, count.tokens, count.exact, ctx.prices)

    def _keep_for_synthesis(self, ctx: RunContext, subtasks: int, question: TextSize) -> None:
        """Keep the synthesizer's call back in the budget, at what its model is expected to bill
        now: its worst case in tokens, its prompt without the sub-answers in money (the budget
        adds the answers as they come)."""
        rates = self.models.synthesizer.rates()
        q, m = rates.tokens(question), ctx.max_output_tokens
        ctx.budget.synthesis_reserve = synthesis_cost(subtasks, m, q, rates.latin)
        ctx.budget.synthesis_prompt = synthesis_cost(subtasks, 0, q, rates.latin)
        ctx.budget.synthesis_output = m

    @tracing.node("planner")
    async def planner(self, state: InputState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        """Plan, and answer each task the moment its dependencies have answers: while the plan
        is still streaming where the planner's model streams."""
        ctx = runtime.context
        emit = runtime.stream_writer
        question = state["question"]
        emit(_stage("planning"))
        offered = [(name, tool.description) for name, tool in ctx.tools.items()]
        messages = planner_messages(question, ctx.max_subtasks, offered)
        question_size = measure(question)
        self._keep_for_synthesis(ctx, ctx.max_subtasks, question_size)

        workers: list[Fallback] = []

        async def run(task: SubTask, inputs: list[SubAnswer]) -> SubAnswer:
            return await answer_task(self.models.worker, ctx, emit, question, task, inputs, fallbacks=workers)

        dispatcher = Dispatcher(run, blocked_answer, limit=ctx.max_concurrency, fence=ctx.fence)

        def planned(task: SubTask) -> None:
            emit(ProgressEvent(event=PLAN_TASK, data=PlanTask(task=task)))
            dispatcher.add(task)

        reader = PlanReader(ctx.max_subtasks, planned, edges=ctx.plan_edges, tools=list(ctx.tools))
        fallbacks: list[Fallback] = []
        try:
            try:
                plan, error = await call_structured(
                    self.models.planner,
                    messages,
                    ctx,
                    Plan,
                    plan_schema(ctx.max_subtasks, list(ctx.tools)),
                    node="planner",
                    fallbacks=fallbacks,
                    on_delta=reader.feed,
                    repair=lambda: not reader.started,
                )
            except ModelCallError as exc:
                if exc.kind not in LIMITS:
                    raise
                plan, error = None, f"{exc.kind}: {exc.message}"
            fallbacks += reader.finish(plan.raw_tasks() if plan else None, error, question)
            subtasks = reader.tasks
            self._keep_for_synthesis(ctx, len(subtasks), question_size)
            emit(ProgressEvent(event=PLAN, data=PlanMade(subtasks=subtasks)))
            emit(_stage("answering"))
            dispatcher.close()
            answers = await dispatcher.wait()
        finally:
            await dispatcher.cancel()
        return {
            "plan": subtasks,
            "subanswers": answers,
            "fallbacks": fallbacks + workers,
            "revisions": 0,
            "pending": [],
        }

    @tracing.node("reviser")
    async def reviser(self, state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        """Re-answer what the critic sent back, with its feedback, and every task that depends
        on those answers, with the new answers."""
        ctx = runtime.context
        emit = runtime.stream_writer
        plan = state["plan"]
        revisions = {r["task_id"]: r for r in state["pending"]}
        rerun = set(revisions) | set(dependents(plan, set(revisions)))
        standing = {t: a for t, a in state["subanswers"].items() if t not in rerun}
        previous = state["subanswers"]
        workers: list[Fallback] = []

        async def run(task: SubTask, inputs: list[SubAnswer]) -> SubAnswer:
            before = previous.get(task["id"])
            return await answer_task(
                self.models.worker,
                ctx,
                emit,
                state["question"],
                task,
                inputs,
                attempt=(before["attempts"] if before else 0) + 1,
                revision=revisions.get(task["id"]),
                previous=before,
                fallbacks=workers,
            )

        dispatcher = Dispatcher(
            run, blocked_answer, limit=ctx.max_concurrency, answered=standing, fence=ctx.fence
        )
        try:
            for task in plan:
                dispatcher.add(task)
            dispatcher.close()
            answers = await dispatcher.wait()
        finally:
            await dispatcher.cancel()
        fallbacks = failed_revisions(answers, rerun) + workers
        return {"subanswers": {t: answers[t] for t in rerun}, "fallbacks": fallbacks, "pending": []}

    @tracing.node("critic")
    async def critic(self, state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        answers = _in_plan_order(state)
        answered = [a for a in answers if a["status"] == "ok"]
        if state["revisions"] >= ctx.max_revisions or not answered or ctx.budget.exhausted:
            return {"pending": []}
        round_ = state["revisions"] + 1
        runtime.stream_writer(_stage("reviewing", round_))
        task_ids = [a["task_id"] for a in answered]
        messages = critic_messages(state["question"], answered, state["plan"])
        fallbacks: list[Fallback] = []
        try:
            critique, error = await call_structured(
                self.models.critic,
                messages,
                ctx,
                Critique,
                critique_schema(task_ids),
                node="critic",
                fallbacks=fallbacks,
                attempt=round_,
            )
        except ModelCallError as exc:
            critique = None
            error = f"the critic's call failed ({exc.kind}: {exc.message})"
        verdicts, unreviewed = verdicts_for(round_, task_ids, critique, error)
        fallbacks += unreviewed
        runtime.stream_writer(
            ProgressEvent(event=CRITIQUE, data=CritiqueMade(round=round_, verdicts=verdicts))
        )
        pending = revisions_asked(verdicts)
        if pending:
            runtime.stream_writer(_stage("revising", round_))
        return {
            "critique": verdicts,
            "fallbacks": fallbacks,
            "pending": pending,
            "revisions": round_ if pending else state["revisions"],
        }

    @tracing.node("synthesizer")
    async def synthesizer(self, state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        runtime.stream_writer(_stage("writing"))
        answers = _in_plan_order(state)
        answered = [a for a in answers if a["status"] == "ok"]
        missing = [a["question"] for a in answers if a["status"] != "ok"]
        messages = synthesizer_messages(state["question"], answered, missing, state["plan"])
        streamed: list[str] = []

        def on_delta(delta: str) -> None:
            streamed.append(delta)
            runtime.stream_writer(ProgressEvent(event=ANSWER_DELTA, data=AnswerDelta(text=delta)))

        try:
            text, _ = await call_text(
                self.models.synthesizer, messages, ctx, node="synthesizer", on_delta=on_delta
            )
        except ModelCallError as exc:
            if exc.kind not in LIMITS or not answered:
                raise
            # Out of budget or time: answer with what the workers found, unsynthesized.
            text = unsynthesized_answer(LIMITS[exc.kind], answered)
            if streamed:
                text = "\n\n" + text
            fallback = Fallback(node="synthesizer", kind="unsynthesized", detail=f"{exc.kind}: {exc.message}")
            on_delta(text)
            answer = "".join(streamed).strip()
            return {"answer": answer, "fallbacks": [fallback], **await self._accounts(state["question"], ctx)}
        if not streamed:
            on_delta(text)
        return {"answer": text.strip(), **await self._accounts(state["question"], ctx)}
