"""POST /v1/reason and /healthz through the real app served over loopback."""

import httpx

from graph.ledger import NODES
from graph.tokens import estimate
from tests.stub_backend import Fault, StubBackend


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_reason_returns_the_result_object(client: httpx.Client, stub: StubBackend) -> None:
    response = client.post("/v1/reason", json={"question": "Why is the sky blue?"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) >= {
        "run_id", "status", "question", "answer", "plan", "subanswers", "critique",
        "usage", "by_node", "calls", "timings", "fallbacks",
    }  # fmt: skip
    assert result["status"] == "completed"
    assert result["question"] == "Why is the sky blue?"
    assert result["answer"] == "The final answer is 42."
    usage = result["usage"]
    assert len(result["calls"]) == len(stub.calls)
    assert usage["total_tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    for node in NODES:
        billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls_of(node))
        assert result["by_node"][node]["calls"] == len(stub.calls_of(node)), node
        assert result["by_node"][node]["total_tokens"] == billed, node
    (synth,) = stub.calls_of("synthesizer")
    assert usage["output_tokens"] == synth.completion_tokens
    assert usage["input_tokens"] == estimate("Why is the sky blue?")


def test_request_fields_shape_the_run(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.subtasks = 8
    response = client.post("/v1/reason", json={"question": "Q?", "max_subtasks": 2, "max_revisions": 0})
    assert response.status_code == 200
    assert len(response.json()["plan"]) == 2
    assert stub.calls_of("critic") == []


def test_reasoning_effort_low_means_two_subquestions_and_no_revision(
    client: httpx.Client, stub: StubBackend
) -> None:
    stub.options.subtasks = 8
    result = client.post("/v1/reason", json={"question": "Q?", "reasoning_effort": "low"}).json()
    assert len(result["plan"]) == 2
    assert stub.calls_of("critic") == []


def test_blank_question_is_rejected_without_backend_calls(client: httpx.Client, stub: StubBackend) -> None:
    response = client.post("/v1/reason", json={"question": "   "})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "question"
    assert error["type"] == "invalid_request_error"
    assert stub.calls == []


def test_unknown_field_is_rejected(client: httpx.Client, stub: StubBackend) -> None:
    response = client.post("/v1/reason", json={"question": "Q?", "max_subtask": 3})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "max_subtask"


def test_backend_rejecting_the_key_is_a_502_naming_the_cause(client: httpx.Client, stub: StubBackend) -> None:
    stub.inject("planner", Fault(status=401, body={"error": {"message": "bad key sk-test"}}))
    response = client.post("/v1/reason", json={"question": "Q?"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_auth"
    assert "sk-test" not in response.text
    assert len(stub.calls) == 1, "an auth failure is not retried"


def test_unknown_route_has_the_same_error_shape(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
