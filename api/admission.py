"""Admission: a request, the settings and the question's size resolve to a run's parameters,
or to a clear refusal. Pure: no I/O, no clock of its own."""

from api.errors import ApiError
from api.schemas import Effort, ReasonRequest
from api.settings import Settings
from graph import RunContext, TokenCount
from graph.budget import Budget, Shape, fit, smallest_budget

EFFORT: dict[Effort, tuple[int, int]] = {"low": (2, 0), "medium": (4, 1), "high": (6, 2)}
"""reasoning_effort → (sub-questions, revision rounds)."""


def shape_for(request: ReasonRequest, settings: Settings) -> Shape:
    """Effort sets breadth and depth, explicit fields win, hard limits cap both."""
    subtasks, revisions = settings.max_subtasks, settings.max_revisions
    if request.reasoning_effort is not None:
        subtasks, revisions = EFFORT[request.reasoning_effort]
    if request.max_subtasks is not None:
        subtasks = request.max_subtasks
    if request.max_revisions is not None:
        revisions = request.max_revisions
    return Shape(
        min(subtasks, settings.subtasks_limit),
        min(revisions, settings.revisions_limit),
        settings.max_output_tokens,
    )


def admit(
    request: ReasonRequest,
    settings: Settings,
    question: TokenCount,
    *,
    now: float,
    completion_budget: int | None = None,
) -> RunContext:
    """The run's context, or ApiError 400 for a question too long or a budget too small.

    ``now`` is ``time.monotonic()``, from which the deadline counts. ``completion_budget`` caps
    everything but the question (reasoning + output), as OpenAI's ``max_completion_tokens`` does.
    """
    if question.tokens > settings.max_question_tokens:
        raise ApiError(
            400,
            f"the question has {question.tokens} tokens; the limit is {settings.max_question_tokens}",
            code="question_too_long",
            param="question",
        )
    budget = request.token_budget
    if completion_budget is not None:
        budget = completion_budget + question.tokens
    if budget is not None and budget < (floor := smallest_budget(question.tokens)):
        raise ApiError(
            400,
            f"token_budget {budget} is too small to answer this question; it needs at least {floor}",
            code="budget_too_small",
            param="max_completion_tokens" if completion_budget is not None else "token_budget",
        )
    shape = fit(shape_for(request, settings), question.tokens, budget)
    deadline_s = min(request.deadline_s or settings.run_deadline_s, settings.run_deadline_s)
    return RunContext(
        max_subtasks=shape.subtasks,
        max_revisions=shape.revisions,
        max_concurrency=settings.max_concurrency,
        max_output_tokens=shape.output_tokens,
        timeout_s=settings.llm_timeout_s,
        max_attempts=settings.llm_max_attempts,
        retry_initial_s=settings.llm_retry_initial_s,
        deadline=now + deadline_s,
        synthesis_time_s=min(settings.llm_timeout_s, deadline_s / 4),
        budget=Budget(tokens=budget, max_calls=settings.max_calls_per_run),
    )
