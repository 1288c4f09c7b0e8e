"""Errors classified by where they happen: in our own code, or in reading the backend's reply."""

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from graph import RunContext
from graph.calls import call_text
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend

MESSAGES = [SystemMessage("You plan."), HumanMessage("Q?")]


def fast() -> RunContext:
    return RunContext(max_attempts=2, retry_initial_s=0.01, retry_max_s=0.02, timeout_s=5)


async def test_a_bug_in_our_code_is_not_blamed_on_the_backend(stub: StubBackend) -> None:
    def broken(piece: str) -> None:
        raise ValueError("a bug while handling a delta")

    ctx = fast()
    with pytest.raises(ValueError, match="a bug while handling a delta"):
        await call_text(stub_models(stub).synthesizer, MESSAGES, ctx, node="synthesizer", on_delta=broken)
    assert len(stub.calls) == 1, "not retried"
    assert ctx.ledger[0]["error"] == "unexpected error (ValueError)"


async def test_an_unreadable_response_is_the_backends_fault_and_retried(stub: StubBackend) -> None:
    stub.inject("worker", Fault(status=200, raw='{"choices": null}'))
    ctx = fast()
    text, rows = await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker")
    assert text
    assert rows[0]["error"] is not None and rows[0]["error"].startswith("malformed backend response")
    assert len(stub.calls) == 2
