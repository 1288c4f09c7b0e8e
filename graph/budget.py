"""Token and call budgets: a run never spends more than it was given.

Every model call reserves its worst case (estimated prompt plus the output cap it will send)
before it goes out and settles the real usage when it returns; the output cap shrinks to what
is left, and a call that cannot fit is not sent. Part of the budget is kept back for the
synthesizer, so the run can always write an answer from what it has.
"""

import math
from dataclasses import dataclass

MIN_CALL_OUTPUT = 16
"""A call whose output cap would fall below this is not worth sending."""

PROMPT_SAFETY = 1.15
"""Prompts are estimated with cl100k_base; backends tokenize differently, so leave headroom."""

PROMPT_OVERHEAD = 16
"""Chat-template tokens a backend may add beyond the per-message estimate."""

# Rough prompt sizes of each agent's fixed text (system prompt and tags), for planning.
PLANNER_FIXED = 160
WORKER_FIXED = 110
CRITIC_FIXED = 170
SYNTHESIZER_FIXED = 130
SUBANSWER_FIXED = 30
SUBQUESTION_TOKENS = 40


class BudgetExhausted(Exception):
    """A call could not be sent within the run's token or call budget."""


@dataclass
class Budget:
    """The run's spending so far; shared by its concurrent nodes (one event loop, no locks)."""

    tokens: int | None = None
    max_calls: int | None = None
    spent: int = 0
    reserved: int = 0
    calls: int = 0
    synthesis_reserve: int = 0
    exhausted: bool = False

    def reserve(self, prompt_estimate: int, output_cap: int, *, for_synthesis: bool) -> int:
        """Reserve room for one call; returns the output cap to send.

        Raises BudgetExhausted when the call does not fit.
        """
        if self.max_calls is not None and self.calls >= self.max_calls:
            self.exhausted = True
            raise BudgetExhausted(f"the run's limit of {self.max_calls} model calls is reached")
        prompt = math.ceil(prompt_estimate * PROMPT_SAFETY) + PROMPT_OVERHEAD
        cap = output_cap
        if self.tokens is not None:
            keep = 0 if for_synthesis else self.synthesis_reserve
            available = self.tokens - self.spent - self.reserved - keep
            cap = min(output_cap, available - prompt)
            if cap < MIN_CALL_OUTPUT:
                self.exhausted = True
                raise BudgetExhausted(f"the run's token budget of {self.tokens} is spent")
            if for_synthesis:
                self.synthesis_reserve = 0
            self.reserved += prompt + cap
        self.calls += 1
        return cap

    def settle(self, prompt_estimate: int, output_cap: int, used: int) -> None:
        """Release a call's reservation and count what it really used."""
        if self.tokens is not None:
            self.reserved -= math.ceil(prompt_estimate * PROMPT_SAFETY) + PROMPT_OVERHEAD + output_cap
        self.spent += used


@dataclass(frozen=True)
class Shape:
    """How wide and deep a run goes, and how long each answer may be."""

    subtasks: int
    revisions: int
    output_tokens: int


def estimated_cost(shape: Shape, question_tokens: int) -> int:
    """An upper estimate of a run's tokens when every call uses its whole output cap."""
    n, m, q = shape.subtasks, shape.output_tokens, question_tokens
    planner = PLANNER_FIXED + q + min(m, n * SUBQUESTION_TOKENS + 20)
    worker = WORKER_FIXED + q + SUBQUESTION_TOKENS + m
    revision_worker = worker + m + 40
    critic = CRITIC_FIXED + q + n * (SUBANSWER_FIXED + SUBQUESTION_TOKENS + m) + min(m, 40 * n)
    synthesizer = synthesis_cost(n, m, q)
    rounds = shape.revisions * (critic + n * revision_worker)
    return planner + n * worker + rounds + synthesizer


def synthesis_cost(subtasks: int, output_tokens: int, question_tokens: int) -> int:
    """The synthesizer's worst case: every sub-answer at its cap, and a full-length answer."""
    per_answer = SUBANSWER_FIXED + SUBQUESTION_TOKENS + output_tokens
    prompt = SYNTHESIZER_FIXED + question_tokens + subtasks * per_answer
    return math.ceil(prompt * PROMPT_SAFETY) + PROMPT_OVERHEAD + output_tokens


def smallest_budget(question_tokens: int) -> int:
    """The least ``token_budget`` that can answer a question of this size: one sub-question,
    no revision, the shortest answers worth sending."""
    return estimated_cost(Shape(1, 0, MIN_CALL_OUTPUT * 2), question_tokens)


def fit(shape: Shape, question_tokens: int, budget: int | None) -> Shape:
    """Shrink a run until its estimated cost fits the budget: first no revisions, then shorter
    answers, then fewer sub-questions. The budget's own bookkeeping still enforces the limit."""
    if budget is None:
        return shape
    n, r, m = shape.subtasks, shape.revisions, shape.output_tokens

    def cost() -> int:
        return estimated_cost(Shape(n, r, m), question_tokens)

    while r > 0 and cost() > budget:
        r -= 1
    while m > 64 and cost() > budget:
        m = max(64, m * 3 // 4)
    while n > 1 and cost() > budget:
        n -= 1
    while m > MIN_CALL_OUTPUT * 2 and cost() > budget:
        m = max(MIN_CALL_OUTPUT * 2, m * 3 // 4)
    return Shape(n, r, m)
