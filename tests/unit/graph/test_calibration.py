# ruff: noqa: RUF001  (texts in Cyrillic and CJK on purpose)
"""Calibration: what a backend bills per cl100k token, before any report and learned from them;
and the budget arithmetic that reserves with it, so that a call billing no more than its
reservation can never take a run over its budget."""

import math
import random

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from api.runs.admission import admit
from api.runs.errors import Refused
from api.runs.request import ReasonRequest
from api.settings import Settings
from graph import RunContext, TokenCount
from graph.budget import Budget, BudgetExhausted, Reservation, Shape, estimated_cost, fit, smallest_budget
from graph.calibration import (
    DECAY,
    MARGIN,
    MIN_OBSERVED,
    NON_LATIN_WEIGHT,
    PRIOR_RATIO,
    PROMPT_OVERHEAD,
    Calibration,
    Rates,
    TextSize,
    measure,
    measure_messages,
)
from graph.calls import call_text
from graph.prompts import PLANNER_SYSTEM, WORKER_SYSTEM
from graph.tokens import MESSAGE_OVERHEAD, estimate
from tests.conftest import stub_models
from tests.stub_backend import StubBackend, billed_tokens

RUSSIAN = "Великая французская революция уничтожила Старый порядок, и Франция стала республикой."
CHINESE = "法国大革命推翻了波旁王朝的君主专制统治，建立了共和国。"
JAPANESE = "フランス革命は、フランス王国で起きた市民革命である。1789年から1799年にかけて起こった。"


def test_tokens_of_other_scripts_are_told_apart_from_latin_ones() -> None:
    assert measure("The French Revolution began in 1789.") == TextSize(
        latin=estimate("The French Revolution began in 1789.")
    )
    for text in (RUSSIAN, CHINESE):
        size = measure(text)
        assert size.tokens == estimate(text)
        assert size.other > 0.9 * size.tokens, size
    messages = [SystemMessage(PLANNER_SYSTEM), HumanMessage(RUSSIAN)]
    assert measure_messages(messages) == measure(PLANNER_SYSTEM) + measure(RUSSIAN) + TextSize(
        framing=2 * MESSAGE_OVERHEAD
    )


def test_before_any_report_a_prompt_is_reserved_at_the_prior() -> None:
    rates = Calibration().rates("m")
    assert rates == Rates(PRIOR_RATIO, PRIOR_RATIO * NON_LATIN_WEIGHT)
    assert rates.other >= 1.6, "at least 1.6x cl100k on non-Latin text"
    size = TextSize(latin=100, other=50, framing=8)
    assert rates.prompt(size) == math.ceil(100 * rates.latin + 50 * rates.other) + 8 + PROMPT_OVERHEAD


SMOLLM2 = [(WORKER_SYSTEM, 73), (PLANNER_SYSTEM, 202), (RUSSIAN, 65), (CHINESE, 48), (JAPANESE, 82)]
"""What the embedded SmolLM2's own tokenizer counts for these texts (its GGUF vocabulary): 1.01x
and 1.06x cl100k on the English prompts, 1.41x on Russian, 1.37x on Chinese, 1.91x on Japanese."""


@pytest.mark.parametrize(("text", "billed"), SMOLLM2)
def test_the_prior_covers_the_tokenizers_we_know(text: str, billed: int) -> None:
    assert Calibration().rates("m").tokens(measure(text)) >= billed


def test_after_a_report_on_english_alone_russian_and_chinese_stay_covered() -> None:
    calibration = Calibration()
    calibration.observe("m", measure(WORKER_SYSTEM), 73)
    assert calibration.ratio("m") == pytest.approx(MARGIN * 73 / 72)
    for text, billed in SMOLLM2[:4]:
        assert calibration.rates("m").tokens(measure(text)) >= billed


def test_the_ratio_is_the_highest_seen_and_comes_down_slowly() -> None:
    calibration = Calibration()
    size = TextSize(latin=1000)
    calibration.observe("m", size, 1100)
    assert calibration.ratio("m") == pytest.approx(MARGIN * 1.1)
    calibration.observe("m", size, 1600)
    assert calibration.ratio("m") == pytest.approx(MARGIN * 1.6), "a higher report counts at once"
    calibration.observe("m", size, 1100)
    assert calibration.ratio("m") == pytest.approx(MARGIN * (1.6 - DECAY * 0.5)), "a lower one a little"
    for _ in range(200):
        calibration.observe("m", size, 1100)
    assert calibration.ratio("m") == pytest.approx(MARGIN * 1.1, abs=0.01)


def test_short_texts_teach_nothing_and_no_backend_counts_below_cl100k() -> None:
    calibration = Calibration()
    calibration.observe("m", TextSize(latin=MIN_OBSERVED - 1), 10 * MIN_OBSERVED)
    assert calibration.ratio("m") == PRIOR_RATIO
    calibration.observe("m", TextSize(latin=1000), 600)
    assert calibration.ratio("m") == MARGIN * 1.0


def test_a_model_not_heard_from_starts_from_the_highest_ratio_of_the_others() -> None:
    calibration = Calibration()
    calibration.observe("planner", TextSize(latin=1000), 2400)
    calibration.observe("worker", TextSize(latin=1000), 1100)
    assert calibration.ratio("synthesizer") == pytest.approx(MARGIN * 2.4)
    assert calibration.ratio("worker") == pytest.approx(MARGIN * 1.1), "its own reports win"
    assert Calibration().ratio("x") == PRIOR_RATIO


@pytest.mark.parametrize(
    ("per_cl100k", "chars_per_token"), [(1.6, None), (None, 2.0), (1.1, None), (None, 4.0)]
)
@pytest.mark.parametrize(
    "prompts",
    [
        [PLANNER_SYSTEM + RUSSIAN * 5, WORKER_SYSTEM + CHINESE * 8, WORKER_SYSTEM],
        [CHINESE * 20, PLANNER_SYSTEM, RUSSIAN * 10 + CHINESE * 10],
    ],
)
def test_once_a_tokenizer_has_reported_every_text_is_covered(
    prompts: list[str], per_cl100k: float | None, chars_per_token: float | None
) -> None:
    """Whatever the mix of scripts that taught the ratio, Latin or not, the reservation covers
    what these tokenizers bill, if some Latin text has been seen (every prompt here has some)."""
    calibration = Calibration()
    calibration.observe("m", measure(prompts[0]), billed_tokens(prompts[0], per_cl100k, chars_per_token))
    calibration.observe(
        "m", measure("word " * 100), billed_tokens("word " * 100, per_cl100k, chars_per_token)
    )
    for text in prompts:
        assert calibration.rates("m").tokens(measure(text)) >= billed_tokens(
            text, per_cl100k, chars_per_token
        )


def test_a_call_that_bills_within_its_reservation_never_takes_the_run_over_its_budget() -> None:
    """Concurrent calls reserve, then settle at most what they reserved: the budget holds."""
    chance = random.Random(18)
    for _ in range(200):
        budget = Budget(tokens=chance.randint(300, 5000), synthesis_reserve=chance.randint(0, 300))
        in_flight: list[tuple[int, Reservation]] = []
        for _ in range(40):
            if in_flight and chance.random() < 0.5:
                prompt, held = in_flight.pop(chance.randrange(len(in_flight)))
                budget.settle(held, chance.randint(0, prompt) + chance.randint(0, held.cap))
                continue
            prompt = chance.randint(20, 800)
            try:
                held = budget.reserve(prompt, chance.randint(16, 512), for_synthesis=chance.random() < 0.1)
            except BudgetExhausted:
                continue
            in_flight.append((prompt, held))
        for prompt, held in in_flight:
            budget.settle(held, prompt + held.cap)
        assert budget.spent <= budget.tokens
        assert budget.reserved == 0


def test_a_run_is_planned_at_the_rates_it_will_reserve_with() -> None:
    question = measure(RUSSIAN * 4)
    shape = Shape(4, 1, 512)
    low, high = Rates.of(1.0), Rates.of(2.0)
    assert estimated_cost(shape, high.tokens(question), high.latin) > estimated_cost(
        shape, low.tokens(question), low.latin
    )
    floor = smallest_budget(high.tokens(question), high.latin)
    assert floor > smallest_budget(low.tokens(question), low.latin)
    for budget in (floor, 2 * floor, 4 * floor):
        fitted = fit(shape, high.tokens(question), budget, high.latin)
        assert estimated_cost(fitted, high.tokens(question), high.latin) <= budget


def test_admission_refuses_a_budget_that_only_a_kinder_tokenizer_could_answer(settings: Settings) -> None:
    request = ReasonRequest(question=RUSSIAN * 4, token_budget=2000)
    count = TokenCount(estimate(request.question), exact=False)
    admitted = admit(request, settings, count, now=0.0, rates=Rates.of(1.0))
    assert admitted.budget.tokens == 2000
    with pytest.raises(Refused) as refused:
        admit(request, settings, count, now=0.0, rates=Rates.of(2.5))
    assert refused.value.code == "budget_too_small"


async def test_a_call_reserves_at_what_its_model_has_shown_it_bills(stub: StubBackend) -> None:
    stub.options.bill_per_cl100k = 1.6
    stub.options.fill_max_tokens = True
    spec = stub_models(stub).worker
    messages = [SystemMessage(WORKER_SYSTEM), HumanMessage(RUSSIAN * 3 + " Why?")]
    first = RunContext(budget=Budget(tokens=2000), max_output_tokens=2000)
    await call_text(spec, messages, first, node="worker")
    assert spec.calibration.ratio(spec.name) >= 1.6
    reserved = spec.rates().prompt(measure_messages(messages))
    assert reserved >= stub.calls[0].prompt_tokens
    second = RunContext(budget=Budget(tokens=2000), max_output_tokens=2000)
    await call_text(spec, messages, second, node="worker")
    assert stub.calls[1].body["max_tokens"] == 2000 - reserved, "what the budget allows after the prompt"
    for ctx, call in zip((first, second), stub.calls, strict=True):
        assert ctx.budget.spent == call.prompt_tokens + call.completion_tokens <= 2000
