"""Cost budgets priced by role: each call reserves its prompt at its model's input price and its
output cap at its output price, and settles to what it really cost."""

import asyncio
import random

import pytest

from api.runs.admission import admit
from api.runs.errors import Refused
from api.runs.request import ReasonRequest
from api.settings import Settings
from graph import Price, RunContext, TokenCount
from graph.budget import (
    Budget,
    BudgetExhausted,
    Reservation,
    RolePrices,
    Shape,
    estimated_cost,
    estimated_usd,
    worst_case,
)
from graph.journal import Entry
from graph.ledger import CallRecord, NodeName

SETTINGS = Settings(_env_file=None, llm_base_url="http://x.invalid/v1")
CHEAP, DEAR = Price(0.5, 2.0), Price(3.0, 15.0)
PRICES = {"cheap": CHEAP, "dear": DEAR}
ROLES: dict[NodeName, str] = {"planner": "dear", "worker": "cheap", "critic": "cheap", "synthesizer": "dear"}


def test_a_call_reserves_at_its_own_models_prices_and_settles_to_its_real_cost() -> None:
    budget = Budget(usd=1.0, prices=PRICES)
    held = budget.reserve(1000, 512, for_synthesis=False, model="cheap")
    assert held.cap == 512
    assert budget.reserved_usd == pytest.approx((1000 * 0.5 + 512 * 2.0) / 1e6)
    budget.settle(held, 1000 + 100, 100)
    assert budget.reserved_usd == pytest.approx(0, abs=1e-15)
    assert budget.spent_usd == pytest.approx((1000 * 0.5 + 100 * 2.0) / 1e6)


def test_the_output_cap_shrinks_to_what_the_money_left_buys() -> None:
    # $0.001 left; the prompt's 100 tokens cost $0.0003 at $3/M: $0.0007 buys 46 tokens at $15/M.
    budget = Budget(usd=0.001, prices=PRICES)
    assert budget.reserve(100, 512, for_synthesis=False, model="dear").cap == 46
    with pytest.raises(BudgetExhausted, match="cost budget"):
        budget.reserve(100, 512, for_synthesis=False, model="dear")
    assert budget.exhausted


def test_the_synthesizer_is_kept_its_prompt_so_far_and_room_for_the_longest_answer() -> None:
    """In millionths of a dollar: of 10,000, the synthesizer is kept its 200-token prompt at 3
    and 32 tokens to write at 15 (1,080). A worker's prompt costs 50; each token it writes costs
    2, and 3 more for the synthesizer to read it; past 32, 15 more for it to write as much:
    (10,000 - 1,080 - 50 + 32 * 15) / 20 = 467."""
    budget = Budget(usd=0.01, prices=PRICES, synthesis_price=DEAR, synthesis_output=512, synthesis_prompt=200)
    held = budget.reserve(100, 2000, for_synthesis=False, model="cheap", answer=True)
    assert held.cap == 467
    budget.settle(held, 100 + 300, 300)
    assert (budget.answers, budget.longest_answer) == (300, 300)
    # Spent 650; kept (200 + 300) * 3 + 300 * 15 = 6,000; a dear call's prompt costs 300:
    # (10,000 - 650 - 6,000 - 300) / 15 = 203.
    assert budget.reserve(100, 5000, for_synthesis=False, model="dear").cap == 203


def test_a_call_that_does_not_fit_waits_for_the_calls_in_flight() -> None:
    async def scenario() -> list[str]:
        budget = Budget(usd=0.002, prices=PRICES)
        seen: list[str] = []
        first = budget.reserve(100, 512, for_synthesis=False, model="dear")  # 113 tokens: nearly all

        async def second() -> None:
            await budget.room(100, 512, for_synthesis=False, model="dear")
            seen.append(f"second gets {budget.reserve(100, 512, for_synthesis=False, model='dear').cap}")

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0)
        seen.append("first settles")
        budget.settle(first, 100 + 20, 20)  # spent 600 of 2,000 millionths
        await waiting
        return seen

    assert asyncio.run(scenario()) == ["first settles", "second gets 73"]


def test_the_synthesizer_always_fits_and_the_cost_budget_is_never_exceeded() -> None:
    """Workers, the critic and others reserve and settle in any order, each billing at most what
    it reserved; when they are done, the synthesizer can still read every answer and write as
    much as the longest, and the run never spends more than its budget."""
    chance = random.Random(20)
    for _ in range(300):
        usd = chance.uniform(0.003, 0.05)
        budget = Budget(
            usd=usd,
            prices=PRICES,
            synthesis_price=DEAR,
            synthesis_output=512,
            synthesis_prompt=chance.randint(0, 150),
        )
        in_flight: list[tuple[int, Reservation]] = []
        for _ in range(40):
            if in_flight and chance.random() < 0.5:
                prompt, held = in_flight.pop(chance.randrange(len(in_flight)))
                completion = chance.randint(0, held.cap)
                budget.settle(held, chance.randint(0, prompt) + completion, completion)
                continue
            prompt, model = chance.randint(20, 300), chance.choice(["cheap", "dear"])
            try:
                cap = chance.randint(16, 512)
                held = budget.reserve(
                    prompt, cap, for_synthesis=False, model=model, answer=chance.random() < 0.6
                )
            except BudgetExhausted:
                continue
            in_flight.append((prompt, held))
        for prompt, held in in_flight:  # each bills its whole reservation
            budget.settle(held, prompt + held.cap, held.cap)
        assert budget.synthesis_prompt is not None
        prompt = budget.synthesis_prompt + budget.answers
        held = budget.reserve(prompt, 512, for_synthesis=True, model="dear")
        assert held.cap >= min(512, max(32, budget.longest_answer))
        budget.settle(held, prompt + held.cap, held.cap)
        assert budget.spent_usd <= usd * (1 + 1e-9)
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
    assert (ctx.budget.answers, ctx.budget.longest_answer) == (100, 100)
    assert ctx.clock.earlier_active_ms == 2000
