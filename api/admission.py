"""Admission: a request, the settings and the question's size resolve to a run's parameters,
or to a clear refusal. Pure: no I/O, no clock of its own."""

from collections.abc import Collection

from api.errors import ApiError
from api.schemas import Effort, ReasonRequest
from api.settings import Settings
from graph import Prices, RunContext, TokenCount
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


def affordable_tokens(cost_budget_usd: float, prices: Prices, models: Collection[str]) -> int | None:
    """The most tokens a run may spend and still cost at most ``cost_budget_usd``, whichever of
    ``models`` each goes to and whether it is read or written: a token budget that enforces the
    cost budget (None: every model is free). ApiError 400 if a model has no price."""
    unpriced = sorted(name for name in models if name not in prices)
    if unpriced:
        raise ApiError(
            400,
            f"cost_budget_usd needs a price for every model, and {unpriced[0]!r} has none (PRICES_FILE)",
            code="no_price",
            param="cost_budget_usd",
        )
    per_token = max(max(prices[name].input, prices[name].output) for name in models) / 1_000_000
    return int(cost_budget_usd / per_token) if per_token > 0 else None


def admit(
    request: ReasonRequest,
    settings: Settings,
    question: TokenCount,
    *,
    now: float,
    completion_budget: int | None = None,
    prices: Prices | None = None,
    models: Collection[str] = (),
) -> RunContext:
    """The run's context, or ApiError 400 for a question too long or a budget too small.

    ``now`` is ``time.monotonic()``, from which the deadline counts. ``completion_budget`` caps
    everything but the question (reasoning + output), as OpenAI's ``max_completion_tokens`` does.
    ``prices`` of the run's ``models`` price its calls and turn ``cost_budget_usd`` into tokens.
    """
    prices = prices or {}
    if question.tokens > settings.max_question_tokens:
        raise ApiError(
            400,
            f"the question has {question.tokens} tokens; the limit is {settings.max_question_tokens}",
            code="question_too_long",
            param="question",
        )
    budget, param = request.token_budget, "token_budget"
    if completion_budget is not None:
        budget, param = completion_budget + question.tokens, "max_completion_tokens"
    if request.cost_budget_usd is not None:
        affordable = affordable_tokens(request.cost_budget_usd, prices, models)
        if affordable is not None and (budget is None or affordable < budget):
            budget, param = affordable, "cost_budget_usd"
    if budget is not None and budget < (floor := smallest_budget(question.tokens)):
        what = f"{param} {budget}"
        if param == "cost_budget_usd":
            what = f"cost_budget_usd {request.cost_budget_usd} buys {budget} tokens, which"
        raise ApiError(
            400,
            f"{what} is too small to answer this question; it needs at least {floor} tokens",
            code="budget_too_small",
            param=param,
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
        prices=prices,
    )
