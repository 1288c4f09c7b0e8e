"""Fencing by lease deadlines: a process's local view of its leases and of its contact with the
store (``api.storage.leases``), and a run's fence in the engine: once it says no, no model call and no
task starts, and the calls already out return and are accounted for."""

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from api.storage.leases import LEASE_MARGIN, RECONNECT_S, LocalLeases, StoreContact
from graph import RunContext
from graph.calls import call_text
from graph.errors import Fenced
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend
from tests.unit.graph.test_graph import run_with_events


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_holds_until_its_local_deadline_and_no_longer() -> None:
    clock = Clock()
    leases = LocalLeases(clock)
    leases.taken(["a"], sent=100.0, lease_s=10)
    deadline = 100.0 + 10 * (1 - LEASE_MARGIN)
    clock.now = deadline - 0.01
    assert leases.holds("a")
    clock.now = deadline
    assert not leases.holds("a"), "past the deadline, however long the process was away"
    assert not leases.holds("never-taken")


def test_a_renewal_extends_what_it_returned_and_ends_the_leases_it_did_not() -> None:
    clock = Clock()
    leases = LocalLeases(clock)
    leases.taken(["kept", "taken-over"], sent=100.0, lease_s=10)
    leases.taken(["claimed-meanwhile"], sent=105.0, lease_s=10)
    leases.renewed({"kept"}, sent=104.0, lease_s=10)
    clock.now = 110.0
    assert leases.holds("kept"), "counted from when the renewal was sent"
    assert not leases.holds("taken-over"), "the renewal did not return it: another process has it"
    assert leases.holds("claimed-meanwhile"), "taken after the renewal was sent: not in its answer"
    clock.now = 104.0 + 10 * (1 - LEASE_MARGIN)
    assert not leases.holds("kept")


def test_a_take_that_commits_while_a_renewal_is_in_flight_is_kept() -> None:
    """On Postgres a create commits on its own connection: a renewal sent before that commit
    does not see the run, and must not end its lease (the run would stop as taken over)."""
    clock = Clock()
    leases = LocalLeases(clock)
    renewal_sent = 101.0
    clock.now = 102.0  # the create, sent at 100, committed after the renewal was sent
    leases.taken(["created"], sent=100.0, lease_s=10)
    leases.renewed(set(), sent=renewal_sent, lease_s=10)
    assert leases.holds("created"), "it keeps the deadline it came with"
    clock.now = 100.0 + 10 * (1 - LEASE_MARGIN)
    assert not leases.holds("created")


def test_an_older_renewal_answering_late_does_not_shorten_a_lease() -> None:
    clock = Clock()
    leases = LocalLeases(clock)
    leases.taken(["a"], sent=100.0, lease_s=10)
    leases.renewed({"a"}, sent=99.0, lease_s=10)
    clock.now = 107.5
    assert leases.holds("a")


def test_a_dropped_lease_holds_no_more() -> None:
    leases = LocalLeases(Clock())
    leases.taken(["a", "b"], sent=100.0, lease_s=10)
    leases.dropped(["a"])
    assert not leases.holds("a") and leases.holds("b")


def test_expired_leases_are_claimed_only_once_back_for_a_lease() -> None:
    clock = Clock()
    contact = StoreContact(clock)
    assert not contact.may_claim_expired(10), "a process that just started counts as just back"
    clock.now += 10 + RECONNECT_S
    assert contact.may_claim_expired(10)
    contact.lost()
    clock.now += 60
    assert not contact.may_claim_expired(10), "cut off: the owners were too"
    contact.reached()
    clock.now += 10
    contact.reached()  # more contact does not move the start of it
    assert not contact.may_claim_expired(10)
    clock.now += RECONNECT_S
    assert contact.may_claim_expired(10)


MESSAGES = [SystemMessage("You answer."), HumanMessage("Hi")]


async def test_a_closed_fence_stops_a_call_before_it_goes_out(stub: StubBackend) -> None:
    ctx = RunContext(fence=lambda: False)
    with pytest.raises(Fenced):
        await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker", task_id="t1")
    assert stub.received == []
    assert ctx.ledger == []


async def test_a_fence_that_closes_between_attempts_stops_the_retry(stub: StubBackend) -> None:
    stub.inject("worker", Fault(status=503))
    ctx = RunContext(max_attempts=3, retry_initial_s=0.01, fence=lambda: not stub.calls)
    with pytest.raises(Fenced):
        await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker", task_id="t1")
    assert len(stub.received) == 1, "the failed attempt is not retried"
    assert [row["error"] for row in ctx.ledger] != [None]


CHAIN = [
    {"id": "t1", "question": "Which country won the 2018 World Cup?", "depends_on": []},
    {"id": "t2", "question": "Who was president of that country then?", "depends_on": ["t1"]},
    {"id": "t3", "question": "Where was the 2018 final played?", "depends_on": []},
]


async def test_a_fence_that_closes_mid_run_starts_nothing_and_lets_the_calls_out_return(
    stub: StubBackend,
) -> None:
    stub.options.plan = CHAIN
    stub.options.slow = {"World Cup": 0.2, "final played": 0.6}  # both out at once

    def answered(part: str) -> bool:
        return any(part in str(c.body["messages"][-1]["content"]) for c in stub.calls_of("worker"))

    result, events = await run_with_events(
        stub, max_subtasks=3, max_revisions=0, fence=lambda: not answered("World Cup")
    )
    assert result["status"] == "cancelled"
    assert [role for role, _ in stub.received] == ["planner", "worker", "worker"], "t2 was never called"
    assert [c["task_id"] for c in result["calls"] if c["node"] == "worker"] == ["t1", "t3"]
    assert all(c["error"] is None for c in result["calls"]), "the slow call out was let return"
    assert "t2" not in {d.get("task_id") for name, d in events if name == "task.started"}
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert result["usage"]["total_tokens"] == billed
