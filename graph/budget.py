"""Token, cost and call budgets: a run never spends more than it was given.

Every model call reserves its worst case (what its prompt is expected to bill, see
``graph.calibration``, plus the output cap it will send, in the backend's own tokens; in money,
the prompt at its model's input price and the cap at its output price) before it goes out and
settles the real usage when it returns; the output cap shrinks to what is left, and a call that
cannot fit is not sent. Part of the budget is kept back for the synthesizer, so the run can
always write an answer from what it has.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from graph.calibration import PROMPT_OVERHEAD
from graph.ledger import NodeName, Price, Prices

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
    usd: float | None = None
    """The cost budget, in US dollars; each call is priced at its own model's ``prices``."""
    prices: Prices = field(default_factory=dict)
    synthesis_price: Price | None = None
    """The synthesizer's model's price: what the synthesis reserve is kept back at."""
    synthesis_output: int = 0
    """Of the synthesis reserve, the tokens it writes (priced as output)."""
    spent: int = 0
    reserved: int = 0
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    calls: int = 0
    synthesis_reserve: int = 0
    exhausted: bool = False

    def reserve(self, prompt: int, output_cap: int, *, for_synthesis: bool, model: str = "") -> int:
        """Reserve room for one call to ``model`` whose prompt may bill ``prompt`` tokens;
        returns the output cap to send.

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
        if self.usd is not None:
            cap = min(cap, self._affordable_output(prompt, model, for_synthesis))
            if cap < MIN_CALL_OUTPUT:
                self.exhausted = True
                raise BudgetExhausted(f"the run's cost budget of ${self.usd} is spent")
            self.reserved_usd += self.prices[model].cost(prompt, cap)
        if for_synthesis:
            self.synthesis_reserve = 0
        if self.tokens is not None:
            self.reserved += prompt + cap
        self.calls += 1
        return cap

    def _affordable_output(self, prompt: int, model: str, for_synthesis: bool) -> int:
        """The most output tokens a call to ``model`` may write within the cost budget, after
        its prompt and what is kept back for the synthesizer (a model with no price: none)."""
        assert self.usd is not None
        price = self.prices.get(model)
        if price is None:
            return 0
        keep = 0.0
        if not for_synthesis and self.synthesis_price is not None and self.synthesis_reserve:
            written = min(self.synthesis_output, self.synthesis_reserve)
            keep = self.synthesis_price.cost(self.synthesis_reserve - written, written)
        left = self.usd - self.spent_usd - self.reserved_usd - keep - price.cost(prompt, 0)
        if price.output <= 0:
            return MIN_CALL_OUTPUT - 1 if left < 0 else 2**31
        return math.floor(left * 1_000_000 / price.output * (1 - 1e-9))

    def settle(
        self, prompt: int, output_cap: int, used: int, *, model: str = "", completion: int = 0
    ) -> None:
        """Release a call's reservation (as it was made) and count what it really used: ``used``
        tokens, ``completion`` of them written."""
        if self.tokens is not None:
            self.reserved -= prompt + output_cap
        self.spent += used
        if self.usd is not None and (price := self.prices.get(model)) is not None:
            self.reserved_usd -= price.cost(prompt, output_cap)
            self.spent_usd += price.cost(used - completion, completion)


@dataclass(frozen=True)
class Shape:
    """How wide and deep a run goes, and how long each answer may be."""

    subtasks: int
    revisions: int
    output_tokens: int


RolePrices = Mapping[NodeName, Price]
"""The price of each role's model."""


def worst_case(shape: Shape, question: int, rate: float = 1.0) -> dict[NodeName, tuple[int, int]]:
    """Each role's tokens when every call uses its whole output cap: (read, written), summed
    over the role's calls (``question`` and ``rate`` as for ``estimated_cost``)."""
    n, m, q, r = shape.subtasks, shape.output_tokens, question, shape.revisions

    def fixed(tokens: int) -> int:
        return math.ceil(tokens * rate) + PROMPT_OVERHEAD

    worker_prompt = fixed(WORKER_FIXED) + q + SUBQUESTION_TOKENS
    revision_prompt = worker_prompt + m + math.ceil(40 * rate)
    critic_prompt = fixed(CRITIC_FIXED + n * SUBANSWER_FIXED) + q + n * (SUBQUESTION_TOKENS + m)
    synthesis_prompt = synthesis_cost(n, m, q, rate) - m
    return {
        "planner": (fixed(PLANNER_FIXED) + q, min(m, n * SUBQUESTION_TOKENS + 20)),
        "worker": (n * worker_prompt + r * n * revision_prompt, (n + r * n) * m),
        "critic": (r * critic_prompt, r * min(m, 40 * n)),
        "synthesizer": (synthesis_prompt, m),
    }


def estimated_cost(shape: Shape, question: int, rate: float = 1.0) -> int:
    """An upper estimate of a run's tokens when every call uses its whole output cap.

    ``question`` is what the question bills in one prompt, and ``rate`` what the backend bills
    per cl100k token of the prompts' own (Latin) text (``graph.calibration.Rates``). Sub-questions
    and sub-answers are the backend's own output: they bill about what they cost to write.
    """
    return sum(read + written for read, written in worst_case(shape, question, rate).values())


def estimated_usd(shape: Shape, question: int, prices: RolePrices, rate: float = 1.0) -> float:
    """The same worst case in US dollars, each role's tokens at its model's prices."""
    parts = worst_case(shape, question, rate)
    return sum(prices[role].cost(read, written) for role, (read, written) in parts.items())


def synthesis_cost(subtasks: int, output_tokens: int, question: int, rate: float = 1.0) -> int:
    """The synthesizer's worst case: every sub-answer at its cap, and a full-length answer
    (``question`` and ``rate`` as for ``estimated_cost``)."""
    own_text = math.ceil((SYNTHESIZER_FIXED + subtasks * SUBANSWER_FIXED) * rate) + PROMPT_OVERHEAD
    return own_text + question + subtasks * (SUBQUESTION_TOKENS + output_tokens) + output_tokens


SMALLEST = Shape(1, 0, MIN_CALL_OUTPUT * 2)
"""The smallest run worth making: one sub-question, no revision, the shortest answers."""


def smallest_budget(question: int, rate: float = 1.0) -> int:
    """The least ``token_budget`` that can answer a question of this size (``SMALLEST``)."""
    return estimated_cost(SMALLEST, question, rate)


def smallest_usd(question: int, prices: RolePrices, rate: float = 1.0) -> float:
    """The least ``cost_budget_usd`` that can answer a question of this size (``SMALLEST``)."""
    return estimated_usd(SMALLEST, question, prices, rate)


def fit(
    shape: Shape,
    question: int,
    budget: int | None,
    rate: float = 1.0,
    *,
    usd: float | None = None,
    prices: RolePrices | None = None,
) -> Shape:
    """Shrink a run until its estimated cost fits the budget (tokens, and with ``prices`` the
    ``usd`` one): first no revisions, then shorter answers, then fewer sub-questions. The
    budget's own bookkeeping still enforces the limit."""
    if budget is None and (usd is None or prices is None):
        return shape
    n, r, m = shape.subtasks, shape.revisions, shape.output_tokens

    def over() -> bool:
        fitted = Shape(n, r, m)
        if budget is not None and estimated_cost(fitted, question, rate) > budget:
            return True
        return usd is not None and prices is not None and estimated_usd(fitted, question, prices, rate) > usd

    while r > 0 and over():
        r -= 1
    while m > 64 and over():
        m = max(64, m * 3 // 4)
    while n > 1 and over():
        n -= 1
    while m > MIN_CALL_OUTPUT * 2 and over():
        m = max(MIN_CALL_OUTPUT * 2, m * 3 // 4)
    return Shape(n, r, m)
