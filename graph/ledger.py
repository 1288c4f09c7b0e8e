"""The token ledger: one row per model call, and the run's usage summary built from the rows."""

from typing import Literal

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


class NodeUsage(TypedDict):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def summarize(calls: list[CallRecord], question_tokens: int, question_exact: bool) -> Usage:
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
    )


def by_node(calls: list[CallRecord]) -> dict[NodeName, NodeUsage]:
    """Per node kind: number of calls and their tokens."""
    rows: dict[NodeName, NodeUsage] = {
        node: NodeUsage(calls=0, prompt_tokens=0, completion_tokens=0, total_tokens=0) for node in NODES
    }
    for call in calls:
        row = rows[call["node"]]
        row["calls"] += 1
        row["prompt_tokens"] += call["prompt_tokens"]
        row["completion_tokens"] += call["completion_tokens"]
        row["total_tokens"] += call["prompt_tokens"] + call["completion_tokens"]
    return rows
