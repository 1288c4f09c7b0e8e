"""Cost budgets priced by role: each call reserves its prompt at its model's input price and its
output cap at its output price, and settles to what it really cost."""

import random

import pytest

from api.runs.admission import admit
from api.runs.errors import Refused
from api.runs.request import ReasonRequest
from api.settings import Settings
from graph import Price, RunContext, TokenCount
from graph.budget import Budget, BudgetExhausted, RolePrices, Shape, estimated_cost, estimated_usd, worst_case
from graph.journal import Entry
from graph.ledger import CallRecord, NodeName

SETTINGS = Settings(_env_file=None, llm_base_url="http://x.invalid/v1")
CHEAP, DEAR = Price(0.5, 2.0), Price(3.0, 15.0)
PRICES = {"cheap": CHEAP, "dear": DEAR}
ROLES: dict[NodeName, str] = {"planner": "dear", "worker": "cheap", "critic": "cheap", "synthesizer": "dear"}


def test_a_call_reserves_at_its_own_models_prices_and_settles_to_its_real_cost() -> None:
    budget = Budget(usd=1.0, prices=PRICES)
    cap = budget.reserve(1000, 512, for_synthesis=False, model="cheap")
    assert cap == 512
    assert budget.reserved_usd == pytest.approx((1000 * 0.5 + 512 * 2.0) / 1e6)
    budget.settle(1000, cap, 1000 + 100, model="cheap", completion=100)
    assert budget.reserved_usd == pytest.approx(0, abs=1e-15)
    assert budget.spent_usd == pytest.approx((1000 * 0.5 + 100 * 2.0) / 1e6)


def test_the_output_cap_shrinks_to_what_the_money_left_buys() -> None:
    # $0.001 left; the prompt's 100 tokens cost $0.0003 at $3/M: $0.0007 buys 46 tokens at $15/M.
    budget = Budget(usd=0.001, prices=PRICES)
    assert budget.reserve(100, 512, for_synthesis=False, model="dear") == 46
    with pytest.raises(BudgetExhausted, match="cost budget"):
        budget.reserve(100, 512, for_synthesis=False, model="dear")
    assert budget.exhausted


def test_the_synthesis_reserve_is_kept_back_at_the_synthesizers_prices() -> None:
    # 900 tokens kept for the synthesizer, 100 of them written: 800 * $3 + 100 * $15 = $0.0039.
    budget = Budget(
        usd=0.005, prices=PRICES, synthesis_price=DEAR, synthesis_output=100, synthesis_reserve=900
    )
    # What is left for a worker: $0.0011 - 1000 * $0.5/M = $0.0006, 300 tokens at $2/M.
    assert budget.reserve(1000, 512, for_synthesis=False, model="cheap") == 299
    assert budget.reserve(800, 100, for_synthesis=True, model="dear") == 100


def test_concurrent_calls_that_bill_within_their_reservations_never_exceed_the_cost_budget() -> None:
    chance = random.Random(20)
    for _ in range(200):
        usd = chance.uniform(0.001, 0.05)
        budget = Budget(usd=usd, prices=PRICES, synthesis_price=DEAR, synthesis_output=64)
        budget.synthesis_reserve = chance.randint(0, 300)
        in_flight: list[tuple[int, int, str]] = []
        for _ in range(40):
            if in_flight and chance.random() < 0.5:
                prompt, cap, model = in_flight.pop(chance.randrange(len(in_flight)))
                completion = chance.randint(0, cap)
                budget.settle(
                    prompt, cap, chance.randint(0, prompt) + completion, model=model, completion=completion
                )
                continue
            prompt, model = chance.randint(20, 800), chance.choice(["cheap", "dear"])
            try:
                cap = budget.reserve(
                    prompt, chance.randint(16, 512), for_synthesis=chance.random() < 0.1, model=model
                )
            except BudgetExhausted:
                continue
            in_flight.append((prompt, cap, model))
        for prompt, cap, model in in_flight:
            budget.settle(prompt, cap, prompt + cap, model=model, completion=cap)
        assert budget.spent_usd <= usd
        assert budget.reserved_usd == pytest.approx(0, abs=1e-12)


def test_a_runs_worst_case_in_money_prices_each_roles_tokens_at_its_model() -> None:
    shape = Shape(4, 1, 256)
    parts = worst_case(shape, 30)
    assert sum(read + written for read, written in parts.values()) == estimated_cost(shape, 30)
    by_role: RolePrices = {role: PRICES[model] for role, model in ROLES.items()}
    expected = sum(by_role[role].cost(read, written) for role, (read, written) in parts.items())
    assert estimated_usd(shape, 30, by_role) == pytest.approx(expected)
    flat: RolePrices = dict.fromkeys(ROLES, Price(10.0, 10.0))
    assert estimated_usd(shape, 30, flat) == pytest.approx(estimated_cost(shape, 30) * 10 / 1e6)


def test_a_budget_the_dearest_rate_refused_is_admitted_and_too_small_ones_name_their_minimum() -> None:
    """$0.01 bought 666 tokens at the dearest rate ($15/M), less than the smallest run needs."""
    question = TokenCount(12, exact=True)

    def admitted(dollars: float) -> RunContext:
        request = ReasonRequest(question="Why do leaves fall in autumn?", cost_budget_usd=dollars)
        return admit(
            request, SETTINGS, question, now=0.0, prices=PRICES, models=set(ROLES.values()), roles=ROLES
        )

    ctx = admitted(0.01)
    assert ctx.budget.usd == 0.01 and ctx.budget.tokens is None
    with pytest.raises(Refused) as refused:
        admitted(0.0005)
    assert refused.value.code == "budget_too_small" and refused.value.param == "cost_budget_usd"
    least = float(refused.value.message.rsplit("$", 1)[1])
    assert 0.0005 < least < 0.01
    assert admitted(least).budget.usd == least


def test_a_resumed_run_starts_with_what_its_earlier_calls_cost() -> None:
    row = CallRecord(
        node="worker",
        task_id="t1",
        attempt=1,
        retry=0,
        model="cheap",
        prompt_tokens=1000,
        completion_tokens=100,
        estimated=False,
        started_at="2026-12-04T12:00:00+00:00",
        finished_at="2026-12-04T12:00:02+00:00",
        latency_ms=2000.0,
        error=None,
    )
    ctx = RunContext(budget=Budget(usd=0.01, prices=PRICES)).resuming(None, [Entry(1, row, "an answer")])
    assert ctx.budget.spent_usd == pytest.approx(CHEAP.cost(1000, 100))
    assert ctx.clock.earlier_active_ms == 2000
