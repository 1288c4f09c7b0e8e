"""The one retry loop, and the cap and structured-output fields."""

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from graph import ModelCallError, RunContext
from graph.calls import call_text
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend


def fast() -> RunContext:
    return RunContext(max_attempts=3, retry_initial_s=0.01, retry_max_s=0.05, timeout_s=5)


MESSAGES = [SystemMessage("You answer."), HumanMessage("Hi")]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
async def test_retryable_status_is_retried_and_every_attempt_is_a_row(stub: StubBackend, status: int) -> None:
    stub.inject("worker", Fault(status=status))
    text, rows = await call_text(stub_models(stub).worker, MESSAGES, fast(), node="worker", task_id="t1")
    assert text
    assert [(r["attempt"], r["retry"]) for r in rows] == [(1, 0), (1, 1)]
    assert rows[0]["error"] is not None and rows[1]["error"] is None
    assert len(stub.calls) == 2


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "upstream_bad_request"),
        (401, "upstream_auth"),
        (403, "upstream_auth"),
        (404, "upstream_bad_request"),
    ],
)
async def test_client_errors_are_not_retried(stub: StubBackend, status: int, kind: str) -> None:
    stub.inject("worker", Fault(status=status))
    ctx = fast()
    with pytest.raises(ModelCallError) as caught:
        await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker")
    assert caught.value.kind == kind
    assert len(ctx.ledger) == 1
    assert len(stub.calls) == 1


async def test_attempts_are_bounded(stub: StubBackend) -> None:
    stub.inject("worker", *[Fault(status=502)] * 5)
    ctx = fast()
    with pytest.raises(ModelCallError) as caught:
        await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker")
    assert caught.value.kind == "upstream_unavailable"
    assert len(stub.calls) == ctx.max_attempts == len(ctx.ledger)


async def test_a_hanging_call_is_cut_at_the_timeout(stub: StubBackend) -> None:
    stub.inject("worker", Fault(status=200, hang_s=3))
    ctx = RunContext(max_attempts=1, timeout_s=0.3)
    with pytest.raises(ModelCallError) as caught:
        await call_text(stub_models(stub).worker, MESSAGES, ctx, node="worker")
    assert caught.value.kind == "upstream_timeout"
    assert ctx.ledger[0]["latency_ms"] < 2000


async def test_malformed_body_is_a_failed_call(stub: StubBackend) -> None:
    stub.inject("worker", Fault(status=200, raw="{not json"), Fault(status=200, raw='{"choices": []}'))
    text, rows = await call_text(stub_models(stub).worker, MESSAGES, fast(), node="worker")
    assert text
    errors = [r["error"] for r in rows]
    assert [e is None for e in errors] == [False, False, True]
    assert all(str(e).startswith("malformed backend response") for e in errors[:2]), errors


@pytest.mark.parametrize(
    ("param", "other"), [("max_tokens", "max_completion_tokens"), ("max_completion_tokens", "max_tokens")]
)
async def test_the_cap_goes_in_the_field_the_backend_honours(
    stub: StubBackend, param: str, other: str
) -> None:
    """llama.cpp honours only max_tokens; OpenAI wants max_completion_tokens."""
    spec = stub_models(stub, token_cap_param=param).worker
    await call_text(spec, MESSAGES, RunContext(max_output_tokens=77), node="worker")
    body = stub.calls[0].body
    assert body[param] == 77
    assert other not in body


async def test_usage_missing_from_a_stream_is_estimated_and_marked(stub: StubBackend) -> None:
    spec = stub_models(stub).synthesizer
    chat = spec.chat.model_copy(update={"stream_usage": False})
    deltas: list[str] = []
    text, rows = await call_text(
        type(spec)(chat=chat, name=spec.name), MESSAGES, fast(), node="synthesizer", on_delta=deltas.append
    )
    assert "".join(deltas) == text
    assert rows[0]["estimated"] is True
    assert rows[0]["completion_tokens"] > 0 and rows[0]["prompt_tokens"] > 0
