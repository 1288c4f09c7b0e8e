"""Admission: a request, the settings and the question's size resolve to a run's parameters,
or to a clear refusal. Pure: no I/O, no clock of its own. ``Admission`` is the same with one
process's settings, prices and models."""

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from api.runs.errors import Refused
from api.runs.quotas import Quota, cost_spent, tokens_spent
from api.runs.request import Effort, ReasonRequest
from api.settings import Settings
from graph import Models, Prices, RunContext, TokenCount
from graph.budget import Budget, RolePrices, Shape, estimated_cost, fit, smallest_budget, smallest_usd
from graph.calibration import PRIOR_RATES, Rates, measure
from graph.ledger import NODES, NodeName, Price
from graph.tools import Tools

EFFORT: dict[Effort, tuple[int, int]] = {"low": (2, 0), "medium": (4, 1), "high": (6, 2)}
"""reasoning_effort → (sub-questions, revision rounds)."""


class Asked(NamedTuple):
    """The question as the run's calls reserve it: what it bills in one prompt, and the rate of
    the prompts' own (Latin) text (``graph.calibration.Rates``)."""

    tokens: int
    rate: float


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
    cost budget (None: every model is free). Refused if a model has no price."""
    require_prices(prices, models)
    per_token = dearest_token(prices, models)
    return int(cost_budget_usd / per_token) if per_token > 0 else None


def require_prices(prices: Prices, models: Collection[str]) -> None:
    """Refused unless every one of ``models`` has a price."""
    unpriced = sorted(name for name in models if name not in prices)
    if unpriced:
        raise Refused(
            f"cost_budget_usd needs a price for every model, and {unpriced[0]!r} has none (PRICES_FILE)",
            code="no_price",
            param="cost_budget_usd",
        )


def dearest_token(prices: Prices, models: Collection[str]) -> float:
    """US dollars of the dearest token any of ``models`` reads or writes."""
    priced = [max(prices[name].input, prices[name].output) for name in models if name in prices]
    return max(priced, default=0.0) / 1_000_000


def role_prices(
    prices: Prices, models: Collection[str], roles: Mapping[NodeName, str] | None
) -> RolePrices | None:
    """The price of each role's model (None: every model is free). Without ``roles``, every role
    is priced at the dearest input and output prices of ``models``. Refused if a model has no
    price."""
    require_prices(prices, models)
    if roles is None:
        dearest = Price(
            max((prices[name].input for name in models), default=0.0),
            max((prices[name].output for name in models), default=0.0),
        )
        by_role: RolePrices = dict.fromkeys(NODES, dearest)
    else:
        require_prices(prices, roles.values())
        by_role = {role: prices[name] for role, name in roles.items()}
    return by_role if any(p.input > 0 or p.output > 0 for p in by_role.values()) else None


def admit(
    request: ReasonRequest,
    settings: Settings,
    question: TokenCount,
    *,
    now: float,
    completion_budget: int | None = None,
    prices: Prices | None = None,
    models: Collection[str] = (),
    roles: Mapping[NodeName, str] | None = None,
    quota: Quota | None = None,
    rates: Rates = PRIOR_RATES,
    tools: Tools | None = None,
) -> RunContext:
    """The run's context, or Refused for a question too long, a budget too small or a tool the
    service does not offer (``tools``: what it offers).

    ``now`` is ``time.monotonic()``, from which the deadline counts. ``completion_budget`` caps
    everything but the question (reasoning + output), as OpenAI's ``max_completion_tokens`` does.
    ``prices`` of the run's ``models`` (``roles``: each role's) price its calls, each call within
    ``cost_budget_usd`` at its own model's prices.
    ``quota``, what is left of the caller's daily quotas, caps the budget too: a run whose
    smallest form needs more is QuotaExceeded, and a run reserves from the quota no more
    than its estimated cost. ``rates`` are what the models are expected to bill per cl100k token
    (``graph.calibration``), which the run's calls will reserve with: its shape is planned with them.
    """
    prices = prices or {}
    if question.tokens > settings.max_question_tokens:
        raise Refused(
            f"the question has {question.tokens} tokens; the limit is {settings.max_question_tokens}",
            code="question_too_long",
            param="question",
        )
    budget, param = request.token_budget, "token_budget"
    if completion_budget is not None:
        budget, param = completion_budget + question.tokens, "max_completion_tokens"
    usd, priced = None, None
    if request.cost_budget_usd is not None:
        priced = role_prices(prices, models, roles)
        usd = request.cost_budget_usd if priced is not None else None
    asked = Asked(rates.tokens(measure(request.question)), rates.latin)
    if quota is not None and quota.binding:
        budget, param = _within_quota(budget, param, quota, request, settings, asked, prices, models)
    if budget is not None and budget < (floor := smallest_budget(asked.tokens, asked.rate)):
        if param == "tokens_per_day":
            raise tokens_spent(quota.renews_in_s if quota else 0)
        if param == "cost_usd_per_day":
            raise cost_spent(quota.renews_in_s if quota else 0)
        raise Refused(
            f"{param} {budget} is too small to answer this question; it needs at least {floor} tokens",
            code="budget_too_small",
            param=param,
        )
    if usd is not None and priced is not None:
        least = math.ceil(smallest_usd(asked.tokens, priced, asked.rate) * 1_000_000) / 1_000_000
        if usd < least:
            raise Refused(
                f"cost_budget_usd {usd} is too small to answer this question; it needs at least ${least:.6f}",
                code="budget_too_small",
                param="cost_budget_usd",
            )
    allowed = tools_for(request.tools, tools or {})
    shape = fit(shape_for(request, settings), asked.tokens, budget, asked.rate)
    deadline_s = min(request.deadline_s or settings.run_deadline_s, settings.run_deadline_s)
    return RunContext(
        max_subtasks=shape.subtasks,
        max_revisions=shape.revisions,
        max_concurrency=settings.max_concurrency,
        max_output_tokens=shape.output_tokens,
        tools=allowed,
        max_tool_calls=settings.max_tool_calls,
        tool_timeout_s=settings.tool_timeout_s,
        tool_result_chars=settings.tool_result_chars,
        timeout_s=settings.llm_timeout_s,
        max_attempts=settings.llm_max_attempts,
        retry_initial_s=settings.llm_retry_initial_s,
        deadline=now + deadline_s,
        synthesis_time_s=min(settings.llm_timeout_s, deadline_s / 4),
        budget=Budget(
            tokens=budget,
            max_calls=settings.max_calls_per_run,
            usd=usd,
            prices=prices,
            synthesis_price=priced["synthesizer"] if priced is not None else None,
        ),
        prices=prices,
    )


def tools_for(asked: list[str] | None, offered: Tools) -> Tools:
    """The tools a run may use: those it asks for, which must be among those ``offered`` (a
    request narrows the service's set, never widens it); all of them if it asks for none."""
    if asked is None:
        return offered
    missing = [name for name in asked if name not in offered]
    if missing:
        raise Refused(
            f"no tool {', '.join(map(repr, missing))} is offered (offered: {', '.join(offered) or 'none'})",
            code="tool_not_offered",
            param="tools",
        )
    return {name: offered[name] for name in asked}


def _within_quota(
    budget: int | None,
    param: str,
    quota: Quota,
    request: ReasonRequest,
    settings: Settings,
    asked: Asked,
    prices: Prices,
    models: Collection[str],
) -> tuple[int | None, str]:
    """The budget capped by what is left of the daily quotas, and the parameter that binds."""
    if quota.cost_usd is not None:
        affordable = affordable_tokens(quota.cost_usd, prices, models)
        if affordable is not None and (budget is None or affordable < budget):
            budget, param = affordable, "cost_usd_per_day"
    if quota.tokens is not None and (budget is None or quota.tokens < budget):
        budget, param = quota.tokens, "tokens_per_day"
    ceiling = estimated_cost(shape_for(request, settings), asked.tokens, asked.rate)
    if budget is None or ceiling < budget:
        budget = ceiling
    return budget, param


def granted(
    request: ReasonRequest, ctx: RunContext, prices: Prices, models: Collection[str]
) -> ReasonRequest:
    """The request as stored for a run under daily quotas: with the budgets it was granted, so
    that it counts against the quotas with all it may spend until it ends, and is held to them
    when it is resumed."""
    tokens = ctx.budget.tokens
    if tokens is None:
        return request
    update: dict[str, float] = {"token_budget": tokens}
    if (per_token := dearest_token(prices, models)) > 0:
        update["cost_budget_usd"] = min(tokens * per_token, request.cost_budget_usd or math.inf)
    return request.model_copy(update=update)


@dataclass(frozen=True)
class Admission:
    """``admit`` and ``granted`` with this process's settings, prices and models."""

    settings: Settings
    prices: Prices
    models: Models
    tools: Tools = field(default_factory=dict)

    def admit(
        self,
        request: ReasonRequest,
        question: TokenCount,
        *,
        now: float,
        completion_budget: int | None,
        quota: Quota | None = None,
    ) -> RunContext:
        return admit(
            request,
            self.settings,
            question,
            now=now,
            completion_budget=completion_budget,
            prices=self.prices,
            models=self.models.names,
            roles={role: getattr(self.models, role).name for role in NODES},
            quota=quota,
            rates=self.models.rates(),
            tools=self.tools,
        )

    def granted(self, request: ReasonRequest, ctx: RunContext) -> ReasonRequest:
        return granted(request, ctx, self.prices, self.models.names)
