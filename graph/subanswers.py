"""The worker: one sub-question answered by the worker model (or revised, with the critic's
feedback), given the answers it depends on; its progress goes out as task events."""

from graph import tracing
from graph.calls import call_text
from graph.context import RunContext
from graph.errors import ModelCallError
from graph.events import (
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_STARTED,
    ProgressEvent,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskTokens,
)
from graph.ledger import CallRecord
from graph.models import ModelSpec
from graph.prompts import worker_messages
from graph.state import Fallback, Revision, SubAnswer, SubTask
from graph.tool_loop import StreamWriter, answer_with_tools


async def answer_task(
    spec: ModelSpec,
    ctx: RunContext,
    emit: StreamWriter,
    question: str,
    task: SubTask,
    inputs: list[SubAnswer],
    *,
    attempt: int = 1,
    revision: Revision | None = None,
    previous: SubAnswer | None = None,
    fallbacks: list[Fallback],
) -> SubAnswer:
    """One worker: the sub-question with the answers it depends on (and, for a revision, the
    previous answer and the critic's feedback), answered by one model call, or by a tool loop
    when the run has tools (where the backend turns tools down, that goes into ``fallbacks``).
    A re-run that fails keeps ``previous`` if it was an answer."""
    task_id = task["id"]
    with tracing.agent("worker", {"reasoner.task_id": task_id, "reasoner.attempt": attempt}) as span:
        emit(
            ProgressEvent(
                event=TASK_STARTED,
                data=TaskStarted(task_id=task_id, attempt=attempt, inputs=[a["task_id"] for a in inputs]),
            )
        )
        messages = worker_messages(question, task, inputs, revision, previous, tools=bool(ctx.tools))
        try:
            if ctx.tools:
                text, rows = await answer_with_tools(
                    spec, ctx, emit, messages, fallbacks, task=task, attempt=attempt
                )
            else:
                text, rows = await call_text(
                    spec, messages, ctx, node="worker", task_id=task_id, attempt=attempt
                )
        except ModelCallError as exc:
            tracing.failed(span, exc.kind)
            emit(
                ProgressEvent(
                    event=TASK_FAILED,
                    data=TaskFailed(task_id=task_id, attempt=attempt, error=exc.message),
                )
            )
            # A re-run that fails (a revision, or a dependent of one) keeps the earlier answer.
            kept = previous if previous is not None and previous["status"] == "ok" else None
            return SubAnswer(
                task_id=task_id,
                question=task["question"],
                answer=kept["answer"] if kept else "",
                status="ok" if kept else "failed",
                attempts=attempt,
                error=f"{exc.kind}: {exc.message}",
            )
        answer = text.strip()
        completed = TaskCompleted(task_id=task_id, attempt=attempt, answer=answer, usage=_tokens(rows))
        emit(ProgressEvent(event=TASK_COMPLETED, data=completed))
        return SubAnswer(
            task_id=task_id,
            question=task["question"],
            answer=answer,
            status="ok",
            attempts=attempt,
            error=None,
        )


def blocked_answer(task: SubTask, dependency: str) -> SubAnswer:
    """What a task gets instead of an answer when a task it depends on failed."""
    return SubAnswer(
        task_id=task["id"],
        question=task["question"],
        answer="",
        status="failed",
        attempts=0,
        error=f"dependency {dependency} failed",
    )


def _tokens(rows: list[CallRecord]) -> TaskTokens:
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    return TaskTokens(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
