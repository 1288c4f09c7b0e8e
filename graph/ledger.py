"""The token ledger: one row per model call, and the run's usage summary built from the rows,
in tokens and, where the models have prices, in US dollars."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NotRequired

from typing_extensions import TypedDict

NodeName = Literal["planner", "worker", "critic", "synthesizer"]
NODES: tuple[NodeName, ...] = ("planner", "worker", "critic", "synthesizer")


class CallRecord(TypedDict):
    """One attempt that went to the backend. Token counts are the backend's own unless estimated."""

    node: NodeName
    task_id: str | None
    attempt: int
    """The node's attempt at its task, as the events number it: a worker's revision is 2."""
    retry: int
    """0 for the first try of this call, 1 for its first retry, and so on."""
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    started_at: str
    finished_at: str
    latency_ms: float
    error: str | None
    step: NotRequired[int]
    """A worker with tools: the call's place in its tool loop (0 first, each reply that asked for
    tools is followed by the next step)."""
    tool_calls: NotRequired[list[str]]
    """The tools the reply asked for, by name (absent when it asked for none)."""


@dataclass(frozen=True)
class Price:
    """A model's price in US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    """Not applied yet: the ledger does not record cached prompt tokens, so every prompt token
    is priced as ``input`` (an upper bound where a backend caches)."""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


Prices = Mapping[str, Price]
"""Model name → price. A model missing from it has no known price."""


class Usage(TypedDict):
    """Run totals in the vocabulary of OpenAI's reasoning models.

    ``total_tokens == input_tokens + output_tokens + reasoning_tokens`` always holds.
    """

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    estimated: bool
    input_tokens_exact: bool
    cost_usd: float | None
    """What the calls cost; None if a model that was called has no price."""


class NodeUsage(TypedDict):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None


def cost(calls: list[CallRecord], prices: Prices) -> float | None:
    """What these calls cost, or None if one of them was made to a model with no price."""
    total = 0.0
    for call in calls:
        price = prices.get(call["model"])
        if price is None:
            return None
        total += price.cost(call["prompt_tokens"], call["completion_tokens"])
    return round(total, 10)


def summarize(
    calls: list[CallRecord], question_tokens: int, question_exact: bool, prices: Prices | None = None
) -> Usage:
    """Split the ledger into input (the question), output (the final answer) and reasoning.

    Reasoning is derived as ``total - input - output`` so the total stays exact even
    when the question's own count is an estimate.
    """
    total = sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)
    output = sum(c["completion_tokens"] for c in calls if c["node"] == "synthesizer" and c["error"] is None)
    input_tokens = max(0, min(question_tokens, total - output))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output,
        reasoning_tokens=total - input_tokens - output,
        total_tokens=total,
        estimated=any(c["estimated"] for c in calls),
        input_tokens_exact=question_exact,
        cost_usd=cost(calls, prices or {}),
    )


def by_node(calls: list[CallRecord], prices: Prices | None = None) -> dict[NodeName, NodeUsage]:
    """Per node kind: number of calls, their tokens and their cost."""
    rows: dict[NodeName, NodeUsage] = {}
    for node in NODES:
        mine = [c for c in calls if c["node"] == node]
        prompt = sum(c["prompt_tokens"] for c in mine)
        completion = sum(c["completion_tokens"] for c in mine)
        rows[node] = NodeUsage(
            calls=len(mine),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cost_usd=cost(mine, prices or {}),
        )
    return rows


class Accounts(TypedDict):
    """What the ledger says of a run, as its result says it: the graph's output state carries it."""

    usage: Usage
    by_node: dict[NodeName, NodeUsage]


def accounts(
    calls: list[CallRecord], question_tokens: int, question_exact: bool, prices: Prices | None = None
) -> Accounts:
    """The usage summary and the per-node table of these calls."""
    return Accounts(
        usage=summarize(calls, question_tokens, question_exact, prices), by_node=by_node(calls, prices)
    )
