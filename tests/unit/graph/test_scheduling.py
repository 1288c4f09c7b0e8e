"""Which tasks start, what a failure blocks and what a revision reaches."""

from graph.scheduling import blocked, critical_path, dependents, ready
from graph.state import SubTask

# t1 → t2 → t3, and t4 on its own; t5 needs t2 and t4.
PLAN = [
    SubTask(id="t1", question="q1", depends_on=[]),
    SubTask(id="t2", question="q2", depends_on=["t1"]),
    SubTask(id="t3", question="q3", depends_on=["t2"]),
    SubTask(id="t4", question="q4", depends_on=[]),
    SubTask(id="t5", question="q5", depends_on=["t2", "t4"]),
]


def test_ready_follows_the_edges() -> None:
    assert ready(PLAN, answered=set(), started=set()) == ["t1", "t4"]
    assert ready(PLAN, answered={"t1"}, started={"t1", "t4"}) == ["t2"]
    assert ready(PLAN, answered={"t1", "t2"}, started={"t1", "t2", "t4"}) == ["t3"]
    assert ready(PLAN, answered={"t1", "t2", "t4"}, started={"t1", "t2", "t4"}) == ["t3", "t5"]


def test_a_failure_blocks_its_chain_only() -> None:
    assert blocked(PLAN, failed={"t1"}) == {"t2": "t1", "t3": "t1", "t5": "t1"}
    assert blocked(PLAN, failed={"t4"}) == {"t5": "t4"}
    assert blocked(PLAN, failed=set()) == {}


def test_a_revision_reaches_every_dependent() -> None:
    assert dependents(PLAN, {"t1"}) == ["t2", "t3", "t5"]
    assert dependents(PLAN, {"t4"}) == ["t5"]
    assert dependents(PLAN, {"t3"}) == []


def test_critical_path() -> None:
    assert critical_path(PLAN) == 3
    assert critical_path([SubTask(id="t1", question="q", depends_on=[])]) == 1
    assert critical_path([]) == 0
