"""Token, cost and call budgets: a run never spends more than it was given.

Every model call reserves its worst case (what its prompt is expected to bill, see
``graph.calibration``, plus the output cap it will send, in the backend's own tokens; in money,
the prompt at its model's input price and the cap at its output price) before it goes out and
settles the real usage when it returns; the output cap shrinks to what is left. A call that does
not fit waits while other calls' reservations are out, and is not sent if it still does not fit
once they have settled.

The synthesizer's call is kept back, so the run can always write an answer from what it has:

- under a token budget, its worst case (every sub-answer at its cap): token budgets shape the run
  up front (``fit``) so that this worst case fits;
- under a cost budget, its prompt as far as it is known (its own text, the sub-questions and every
  sub-answer written so far) and room to write as much as the longest sub-answer; a worker holds,
  besides its own call, the synthesizer reading its answer. So the money kept grows with the
  answers actually written, not with the worst case of answers still to come, which at the
  prices of a cheap worker and a dear synthesizer is many times what runs really cost.
"""

import asyncio
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


@dataclass(frozen=True)
class Reservation:
    """What the budget holds for one call until it settles."""

    cap: int
    """The output cap to send."""
    tokens: int
    usd: float
    model: str
    answer: bool


@dataclass
class Budget:
    """The run's spending so far; shared by its concurrent nodes (one event loop, no locks)."""

    tokens: int | None = None
    max_calls: int | None = None
    usd: float | None = None
    """The cost budget, in US dollars; each call is priced at its own model's ``prices``."""
    prices: Prices = field(default_factory=dict)
    synthesis_price: Price | None = None
    """The synthesizer's model's price: what its reserve is kept back at."""
    synthesis_output: int = 0
    """The most the synthesizer may write (the run's output cap)."""
    synthesis_reserve: int = 0
    """The synthesizer's worst case in tokens, kept back under a token budget (0: nothing kept)."""
    synthesis_prompt: int | None = None
    """The synthesizer's prompt without the sub-answers, set once the plan is known; None: nothing
    is kept back (no synthesis ahead yet, or it has begun)."""
    answers: int = 0
    """The sub-answer tokens written so far, which the synthesizer will read."""
    longest_answer: int = 0
    spent: int = 0
    reserved: int = 0
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    calls: int = 0
    out: int = 0
    """Reservations not settled yet: calls in flight."""
    exhausted: bool = False
    _settled: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False, compare=False)

    async def room(
        self, prompt: int, output_cap: int, *, for_synthesis: bool, model: str = "", answer: bool = False
    ) -> None:
        """Wait while the call does not fit but calls in flight may still give room back."""
        answer = answer and self.synthesis_prompt is not None
        while self.out and self._grant(prompt, output_cap, for_synthesis, model, answer)[0] < MIN_CALL_OUTPUT:
            await self._settled.wait()

    def reserve(
        self, prompt: int, output_cap: int, *, for_synthesis: bool, model: str = "", answer: bool = False
    ) -> Reservation:
        """Hold room for one call to ``model`` whose prompt may bill ``prompt`` tokens, and, for
        a sub-answer (``answer``), for the synthesizer reading it and writing as much.

        Raises BudgetExhausted when the call does not fit.
        """
        answer = answer and self.synthesis_prompt is not None
        if self.max_calls is not None and self.calls >= self.max_calls:
            self.exhausted = True
            raise BudgetExhausted(f"the run's limit of {self.max_calls} model calls is reached")
        cap, limit = self._grant(prompt, output_cap, for_synthesis, model, answer)
        if cap < MIN_CALL_OUTPUT:
            self.exhausted = True
            raise BudgetExhausted(limit)
        if for_synthesis:
            self.synthesis_prompt, self.synthesis_reserve = None, 0
        held = Reservation(cap, *self._holds(prompt, cap, model, answer), model, answer)
        self.reserved += held.tokens
        self.reserved_usd += held.usd
        self.calls += 1
        self.out += 1
        return held

    def settle(self, held: Reservation, used: int, completion: int = 0) -> None:
        """Give a call's reservation back and count what it really used: ``used`` tokens,
        ``completion`` of them written (for a sub-answer: what the synthesizer will read)."""
        self.reserved -= held.tokens
        self.reserved_usd -= held.usd
        self.spent += used
        if (price := self.prices.get(held.model)) is not None:
            self.spent_usd += price.cost(used - completion, completion)
        if held.answer:
            self.answers += completion
            self.longest_answer = max(self.longest_answer, completion)
        self.out -= 1
        self._settled.set()
        self._settled = asyncio.Event()

    def _grant(
        self, prompt: int, output_cap: int, for_synthesis: bool, model: str, answer: bool
    ) -> tuple[int, str]:
        """The output cap the call would get now, and the limit that binds when it is too small."""
        cap, limit = output_cap, ""
        if self.tokens is not None:
            keep = 0 if for_synthesis else self.synthesis_reserve
            cap = min(cap, self.tokens - self.spent - self.reserved - keep - prompt)
            limit = f"the run's token budget of {self.tokens} is spent"
        if self.usd is not None and cap >= MIN_CALL_OUTPUT:
            price = self.prices.get(model)
            if price is None:
                cap = 0
            else:
                keep_usd = 0.0 if for_synthesis else self._kept_usd()
                left = self.usd - self.spent_usd - self.reserved_usd - keep_usd - price.cost(prompt, 0)
                reading, writing = self._synthesis_rates(answer)
                micro = left * 1_000_000 * (1 - 1e-9)  # a hair under: rounding never tips it over
                written = self._written() if answer else 0
                cap = min(cap, _most(micro, price.output + reading, written, writing))
            limit = f"the run's cost budget of ${self.usd} is spent"
        return cap, limit

    def _holds(self, prompt: int, cap: int, model: str, answer: bool) -> tuple[int, float]:
        """What a call with this cap holds: itself, and in money for a sub-answer the synthesizer
        reading it and writing more than it is kept room for now."""
        if self.usd is None or (price := self.prices.get(model)) is None:
            return prompt + cap, 0.0
        reading, writing = self._synthesis_rates(answer)
        grows = max(0, cap - self._written()) if answer else 0
        return prompt + cap, price.cost(prompt, cap) + (cap * reading + grows * writing) / 1_000_000

    def _synthesis_rates(self, answer: bool) -> tuple[float, float]:
        """Per million tokens of a sub-answer: the synthesizer reading it, and writing as much."""
        if not answer or self.synthesis_price is None:
            return 0.0, 0.0
        return self.synthesis_price.input, self.synthesis_price.output

    def _written(self) -> int:
        """What the synthesizer is kept room to write: as much as the longest sub-answer."""
        return min(self.synthesis_output, max(2 * MIN_CALL_OUTPUT, self.longest_answer))

    def _kept_usd(self) -> float:
        """The money kept back for the synthesizer."""
        if self.synthesis_prompt is None or self.synthesis_price is None:
            return 0.0
        return self.synthesis_price.cost(self.synthesis_prompt + self.answers, self._written())


def _most(left: float, per: float, written: int, extra: float) -> int:
    """The largest output cap ``c`` with ``c * per + max(0, c - written) * extra <= left``: each
    token costs ``per``, and those beyond ``written`` cost ``extra`` more."""
    if per <= 0:
        return 2**31 if left >= 0 else 0
    within = left / per
    if within <= written or extra <= 0:
        return math.floor(within)
    return math.floor((left + written * extra) / (per + extra))


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


def fit(shape: Shape, question: int, budget: int | None, rate: float = 1.0) -> Shape:
    """Shrink a run until its estimated token cost fits the token budget: first no revisions,
    then shorter answers, then fewer sub-questions. The budget's own bookkeeping still enforces
    the limit. (A cost budget shapes nothing: it is held call by call, since at the prices of a
    cheap worker and a dear synthesizer the worst case is many times what runs really cost.)"""
    if budget is None:
        return shape
    n, r, m = shape.subtasks, shape.revisions, shape.output_tokens

    def over() -> bool:
        return estimated_cost(Shape(n, r, m), question, rate) > budget

    while r > 0 and over():
        r -= 1
    while m > 64 and over():
        m = max(64, m * 3 // 4)
    while n > 1 and over():
        n -= 1
    while m > MIN_CALL_OUTPUT * 2 and over():
        m = max(MIN_CALL_OUTPUT * 2, m * 3 // 4)
    return Shape(n, r, m)
