"""Graph state: what goes in, what comes out, and what the nodes share in between."""

import operator
from typing import Annotated, Literal, NotRequired

from typing_extensions import TypedDict

from graph.ledger import NodeName, NodeUsage, Usage


class SubTask(TypedDict):
    """One step of the plan. It may use the answers of the earlier steps it depends on."""

    id: str
    question: str
    depends_on: list[str]
    tools: NotRequired[list[str]]
    """The tools the planner said the step needs (absent: it named none, and the worker is
    offered every tool the run may use)."""


class SubAnswer(TypedDict):
    task_id: str
    question: str
    answer: str
    status: Literal["ok", "failed"]
    attempts: int
    error: str | None


class VerdictRecord(TypedDict):
    round: int
    task_id: str
    verdict: Literal["accept", "revise"]
    feedback: str


class Fallback(TypedDict):
    """A place where the run replaced a model's unusable output with a safe default."""

    node: str
    kind: str
    detail: str


def merge_answers(left: dict[str, SubAnswer], right: dict[str, SubAnswer]) -> dict[str, SubAnswer]:
    """Latest answer per sub-question wins; a revision replaces the earlier answer."""
    return {**left, **right}


class InputState(TypedDict):
    question: str


class OutputState(TypedDict):
    """What a run ends with. ``usage`` and ``by_node`` are the ledger's accounts as the
    synthesizer leaves them (``graph.ledger.accounts``), for LangGraph's own tools: the service
    builds its result from the ledger itself."""

    question: str
    answer: str
    plan: list[SubTask]
    subanswers: Annotated[dict[str, SubAnswer], merge_answers]
    critique: Annotated[list[VerdictRecord], operator.add]
    fallbacks: Annotated[list[Fallback], operator.add]
    usage: Usage
    by_node: dict[NodeName, NodeUsage]


class Revision(TypedDict):
    task_id: str
    feedback: str


class State(OutputState):
    revisions: int
    pending: list[Revision]
