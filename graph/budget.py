"""Token and call budgets: a run never spends more than it was given.

Every model call reserves its worst case (what its prompt is expected to bill, see
``graph.calibration``, plus the output cap it will send, in the backend's own tokens) before it
goes out and settles the real usage when it returns; the output cap shrinks to what is left, and
a call that cannot fit is not sent. Part of the budget is kept back for the synthesizer, so the
run can always write an answer from what it has.
"""

import math
from dataclasses import dataclass

from graph.calibration import PROMPT_OVERHEAD

MIN_CALL_OUTPUT = 16
"""A call whose output cap would fall below this is not worth sending."""

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

    def reserve(self, prompt: int, output_cap: int, *, for_synthesis: bool) -> int:
        """Reserve room for one call whose prompt may bill ``prompt`` tokens; returns the output
        cap to send.

        Raises BudgetExhausted when the call does not fit.
        """
        if self.max_calls is not None and self.calls >= self.max_calls:
            self.exhausted = True
            raise BudgetExhausted(f"the run's limit of {self.max_calls} model calls is reached")
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

    def settle(self, prompt: int, output_cap: int, used: int) -> None:
        """Release a call's reservation (as it was made) and count what it really used."""
        if self.tokens is not None:
            self.reserved -= prompt + output_cap
        self.spent += used


@dataclass(frozen=True)
class Shape:
    """How wide and deep a run goes, and how long each answer may be."""

    subtasks: int
    revisions: int
    output_tokens: int


def estimated_cost(shape: Shape, question: int, rate: float = 1.0) -> int:
    """An upper estimate of a run's tokens when every call uses its whole output cap.

    ``question`` is what the question bills in one prompt, and ``rate`` what the backend bills
    per cl100k token of the prompts' own (Latin) text (``graph.calibration.Rates``). Sub-questions
    and sub-answers are the backend's own output: they bill about what they cost to write.
    """
    n, m, q = shape.subtasks, shape.output_tokens, question

    def fixed(tokens: int) -> int:
        return math.ceil(tokens * rate) + PROMPT_OVERHEAD

    planner = fixed(PLANNER_FIXED) + q + min(m, n * SUBQUESTION_TOKENS + 20)
    worker = fixed(WORKER_FIXED) + q + SUBQUESTION_TOKENS + m
    revision_worker = worker + m + math.ceil(40 * rate)
    critic = fixed(CRITIC_FIXED + n * SUBANSWER_FIXED) + q + n * (SUBQUESTION_TOKENS + m) + min(m, 40 * n)
    synthesizer = synthesis_cost(n, m, q, rate)
    rounds = shape.revisions * (critic + n * revision_worker)
    return planner + n * worker + rounds + synthesizer


def synthesis_cost(subtasks: int, output_tokens: int, question: int, rate: float = 1.0) -> int:
    """The synthesizer's worst case: every sub-answer at its cap, and a full-length answer
    (``question`` and ``rate`` as for ``estimated_cost``)."""
    own_text = math.ceil((SYNTHESIZER_FIXED + subtasks * SUBANSWER_FIXED) * rate) + PROMPT_OVERHEAD
    return own_text + question + subtasks * (SUBQUESTION_TOKENS + output_tokens) + output_tokens


def smallest_budget(question: int, rate: float = 1.0) -> int:
    """The least ``token_budget`` that can answer a question of this size: one sub-question,
    no revision, the shortest answers worth sending."""
    return estimated_cost(Shape(1, 0, MIN_CALL_OUTPUT * 2), question, rate)


def fit(shape: Shape, question: int, budget: int | None, rate: float = 1.0) -> Shape:
    """Shrink a run until its estimated cost fits the budget: first no revisions, then shorter
    answers, then fewer sub-questions. The budget's own bookkeeping still enforces the limit."""
    if budget is None:
        return shape
    n, r, m = shape.subtasks, shape.revisions, shape.output_tokens

    def cost() -> int:
        return estimated_cost(Shape(n, r, m), question, rate)

    while r > 0 and cost() > budget:
        r -= 1
    while m > 64 and cost() > budget:
        m = max(64, m * 3 // 4)
    while n > 1 and cost() > budget:
        n -= 1
    while m > MIN_CALL_OUTPUT * 2 and cost() > budget:
        m = max(MIN_CALL_OUTPUT * 2, m * 3 // 4)
    return Shape(n, r, m)
