"""The four agents. Each node reads the state, calls its model through ``graph.calls`` (which
records every attempt in the run's ledger) and returns only what it changed. Progress goes out
through the stream writer."""

from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.budget import synthesis_cost
from graph.calls import call_structured, call_text
from graph.context import RunContext
from graph.errors import ErrorKind, ModelCallError
from graph.events import (
    ANSWER_DELTA,
    CRITIQUE,
    PLAN,
    STAGE,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_STARTED,
    AnswerDelta,
    CritiqueMade,
    PlanMade,
    ProgressEvent,
    Stage,
    StageStarted,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskTokens,
)
from graph.ledger import CallRecord
from graph.models import Models
from graph.prompts import (
    CRITIC_SYSTEM,
    CRITIC_USER,
    DEFAULT_FEEDBACK,
    MISSING_BLOCK,
    PLANNER_SYSTEM,
    PLANNER_USER,
    SUBANSWER_BLOCK,
    SYNTHESIZER_SYSTEM,
    SYNTHESIZER_USER,
    UNSYNTHESIZED_ANSWER,
    WORKER_REVISION_USER,
    WORKER_SYSTEM,
    WORKER_USER,
    quote,
)
from graph.schemas import Critique, Plan, critique_schema, plan_schema
from graph.state import (
    Fallback,
    InputState,
    Revision,
    State,
    SubAnswer,
    SubTask,
    VerdictRecord,
    WorkerInput,
)
from graph.tokens import estimate

LIMITS: dict[ErrorKind, str] = {
    "budget_exhausted": "the run's token budget ran out",
    "deadline_exceeded": "the run's deadline passed",
}
"""Failures that come from the run's own limits, not from the backend."""


def _tokens(rows: list[CallRecord]) -> TaskTokens:
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    return TaskTokens(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _stage(stage: Stage, round_: int | None = None) -> ProgressEvent:
    return ProgressEvent(event=STAGE, data=StageStarted(stage=stage, round=round_))


def _subanswer_blocks(answers: list[SubAnswer]) -> str:
    return "\n".join(
        SUBANSWER_BLOCK.format(
            task_id=a["task_id"], subquestion=quote(a["question"]), answer=quote(a["answer"])
        )
        for a in answers
    )


class Nodes:
    """The graph's nodes, bound to the models they call."""

    def __init__(self, models: Models) -> None:
        self.models = models

    async def planner(self, state: InputState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        question = state["question"]
        runtime.stream_writer(_stage("planning"))
        messages: list[BaseMessage] = [
            SystemMessage(PLANNER_SYSTEM.format(max_subtasks=ctx.max_subtasks)),
            HumanMessage(PLANNER_USER.format(question=quote(question))),
        ]
        question_tokens = estimate(question)
        budget = ctx.budget
        budget.synthesis_reserve = synthesis_cost(ctx.max_subtasks, ctx.max_output_tokens, question_tokens)
        fallbacks: list[Fallback] = []
        try:
            plan, error = await call_structured(
                self.models.planner,
                messages,
                ctx,
                Plan,
                plan_schema(ctx.max_subtasks),
                node="planner",
                fallbacks=fallbacks,
            )
        except ModelCallError as exc:
            if exc.kind not in LIMITS:
                raise
            plan, error = None, f"{exc.kind}: {exc.message}"
        if plan is None:
            questions = [question]
            fallbacks.append(
                Fallback(
                    node="planner",
                    kind="single_subquestion",
                    detail=f"no usable plan ({error}); the whole question is the only sub-question",
                )
            )
        else:
            questions = plan.subquestions[: ctx.max_subtasks]
        subtasks = [SubTask(id=f"t{i}", question=q) for i, q in enumerate(questions, start=1)]
        budget.synthesis_reserve = synthesis_cost(len(subtasks), ctx.max_output_tokens, question_tokens)
        runtime.stream_writer(ProgressEvent(event=PLAN, data=PlanMade(subtasks=subtasks)))
        runtime.stream_writer(_stage("answering"))
        return {
            "plan": subtasks,
            "fallbacks": fallbacks,
            "revisions": 0,
            "pending": [],
        }

    async def worker(self, state: WorkerInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        task, attempt = state["task"], state["attempt"]
        emit = runtime.stream_writer
        emit(ProgressEvent(event=TASK_STARTED, data=TaskStarted(task_id=task["id"], attempt=attempt)))
        if state["feedback"] is None:
            user = WORKER_USER.format(question=quote(state["question"]), subquestion=quote(task["question"]))
        else:
            user = WORKER_REVISION_USER.format(
                question=quote(state["question"]),
                subquestion=quote(task["question"]),
                previous_answer=quote(state["previous_answer"] or ""),
                feedback=quote(state["feedback"]),
            )
        messages: list[BaseMessage] = [SystemMessage(WORKER_SYSTEM), HumanMessage(user)]
        try:
            text, rows = await call_text(
                self.models.worker, messages, ctx, node="worker", task_id=task["id"], attempt=attempt
            )
        except ModelCallError as exc:
            emit(
                ProgressEvent(
                    event=TASK_FAILED, data=TaskFailed(task_id=task["id"], attempt=attempt, error=exc.message)
                )
            )
            error = f"{exc.kind}: {exc.message}"
            previous = state["previous_answer"]
            kept = SubAnswer(
                task_id=task["id"],
                question=task["question"],
                answer=previous or "",
                status="ok" if previous else "failed",
                attempts=attempt,
                error=error,
            )
            update: dict[str, Any] = {"subanswers": {task["id"]: kept}}
            if previous:
                # The critic asked for a revision that did not happen: say so.
                detail = f"{task['id']}: revision {attempt} failed ({error}); the previous answer is kept"
                update["fallbacks"] = [Fallback(node="worker", kind="revision_failed", detail=detail)]
            return update
        answer = text.strip()
        completed = TaskCompleted(task_id=task["id"], attempt=attempt, answer=answer, usage=_tokens(rows))
        emit(ProgressEvent(event=TASK_COMPLETED, data=completed))
        done = SubAnswer(
            task_id=task["id"],
            question=task["question"],
            answer=answer,
            status="ok",
            attempts=attempt,
            error=None,
        )
        return {"subanswers": {task["id"]: done}}

    async def critic(self, state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        answered = [a for a in state["subanswers"].values() if a["status"] == "ok"]
        if state["revisions"] >= ctx.max_revisions or not answered or ctx.budget.exhausted:
            return {"pending": []}
        round_ = state["revisions"] + 1
        runtime.stream_writer(_stage("reviewing", round_))
        task_ids = [a["task_id"] for a in answered]
        messages: list[BaseMessage] = [
            SystemMessage(CRITIC_SYSTEM),
            HumanMessage(
                CRITIC_USER.format(question=quote(state["question"]), subanswers=_subanswer_blocks(answered))
            ),
        ]
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
        given = {v.task_id: v for v in critique.verdicts} if critique else {}
        if critique is None:
            fallbacks.append(
                Fallback(node="critic", kind="accept_all", detail=f"{error}; every answer accepted")
            )
        elif missing := [t for t in task_ids if t not in given]:
            fallbacks.append(
                Fallback(
                    node="critic",
                    kind="missing_verdict",
                    detail=f"no verdict for {', '.join(missing)}; accepted",
                )
            )
        verdicts = [
            VerdictRecord(
                round=round_,
                task_id=t,
                verdict=given[t].verdict if t in given else "accept",
                feedback=given[t].feedback.strip() if t in given else "",
            )
            for t in task_ids
        ]
        runtime.stream_writer(
            ProgressEvent(event=CRITIQUE, data=CritiqueMade(round=round_, verdicts=verdicts))
        )
        pending = [
            Revision(task_id=v["task_id"], feedback=v["feedback"] or DEFAULT_FEEDBACK)
            for v in verdicts
            if v["verdict"] == "revise"
        ]
        if pending:
            runtime.stream_writer(_stage("revising", round_))
        return {
            "critique": verdicts,
            "fallbacks": fallbacks,
            "pending": pending,
            "revisions": round_ if pending else state["revisions"],
        }

    async def synthesizer(self, state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        runtime.stream_writer(_stage("writing"))
        answers = [state["subanswers"][t["id"]] for t in state["plan"] if t["id"] in state["subanswers"]]
        answered = [a for a in answers if a["status"] == "ok"]
        missing = [a["question"] for a in answers if a["status"] != "ok"]
        messages: list[BaseMessage] = [
            SystemMessage(SYNTHESIZER_SYSTEM),
            HumanMessage(
                SYNTHESIZER_USER.format(
                    question=quote(state["question"]),
                    subanswers=_subanswer_blocks(answered),
                    missing=MISSING_BLOCK.format(subquestions=quote("; ".join(missing))) if missing else "",
                ).strip()
            ),
        ]
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
            text = UNSYNTHESIZED_ANSWER.format(
                reason=LIMITS[exc.kind],
                subanswers="\n\n".join(f"{a['question']}\n{a['answer']}" for a in answered),
            )
            if streamed:
                text = "\n\n" + text
            fallback = Fallback(node="synthesizer", kind="unsynthesized", detail=f"{exc.kind}: {exc.message}")
            on_delta(text)
            return {"answer": "".join(streamed).strip(), "fallbacks": [fallback]}
        if not streamed:
            on_delta(text)
        return {"answer": text.strip()}
