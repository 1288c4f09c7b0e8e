"""Backend faults through the real HTTP app: bounded retries, timeouts, deadlines, partial runs."""

import httpx

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import Fault, StubBackend
from tests.support.sse import frames


def reason(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post("/v1/reason", json={"question": "How do tides work?", **body})


def test_persistent_5xx_is_retried_a_bounded_number_of_times(client: httpx.Client, stub: StubBackend) -> None:
    stub.inject("planner", *[Fault(status=503)] * 10)
    response = reason(client)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert len(stub.calls) == 2, "LLM_MAX_ATTEMPTS=2 in the test settings"
    run_id = client.get("/v1/runs").json()["data"][0]["run_id"]
    result = client.get(f"/v1/runs/{run_id}").json()["result"]
    assert result["status"] == "failed"
    assert [(c["attempt"], c["retry"]) for c in result["calls"]] == [(1, 0), (1, 1)]


def test_429_honours_retry_after(client: httpx.Client, stub: StubBackend) -> None:
    stub.inject("planner", Fault(status=429, headers={"Retry-After": "1"}))
    assert reason(client, max_revisions=0).status_code == 200
    first, second = stub.calls_of("planner")[:2]
    assert second.started - first.finished >= 0.9


def test_client_errors_are_never_retried(client: httpx.Client, stub: StubBackend) -> None:
    body = {
        "error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}
    }
    stub.inject("planner", Fault(status=400, body=body))
    response = reason(client)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_bad_request"
    assert "context_length_exceeded" in error["message"]
    assert len(stub.calls) == 1


def test_a_failing_worker_gives_a_partial_answer(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.subtasks = 3
    stub.inject("worker", *[Fault(status=500, match="Part 2")] * 2)
    with client.stream(
        "POST",
        "/v1/reason",
        json={"question": "Q?", "max_revisions": 0},
        headers={"Accept": "text/event-stream"},
    ) as response:
        got = [f for f in frames(response) if not f.comment]
    failed = [f for f in got if f.event == "task.failed"]
    assert len(failed) == 1
    result = got[-1].data["result"]
    assert result["status"] == "partial"
    assert [a["status"] for a in result["subanswers"]].count("failed") == 1
    assert result["answer"]
    synth_prompt = stub.calls_of("synthesizer")[0].body["messages"][-1]["content"]
    assert "<unanswered>" in synth_prompt


def test_a_hanging_call_is_cut_at_the_timeout(stub: StubBackend, settings: Settings) -> None:
    quick = settings.model_copy(update={"llm_timeout_s": 0.5, "llm_max_attempts": 1})
    stub.options.subtasks = 2
    stub.inject("worker", Fault(status=200, hang_s=5))
    with (
        Service(quick, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=30) as http,
    ):
        response = http.post("/v1/reason", json={"question": "Q?", "max_revisions": 0})
    result = response.json()
    assert result["status"] == "partial"
    failed = [a for a in result["subanswers"] if a["status"] == "failed"]
    assert failed and failed[0]["error"].startswith("upstream_timeout")
    assert result["timings"]["total_ms"] < 4000


def test_the_run_deadline_cuts_slow_steps_and_keeps_time_to_answer(
    client: httpx.Client, stub: StubBackend
) -> None:
    stub.inject("critic", Fault(status=200, hang_s=4))
    response = reason(client, deadline_s=2, max_revisions=1)
    result = response.json()
    assert response.status_code == 200, result
    assert result["answer"] == "The final answer is 42."
    assert 1400 < result["timings"]["total_ms"] < 3000
    assert result["fallbacks"][0]["node"] == "critic"
    assert "deadline" in result["fallbacks"][0]["detail"]


def test_a_deadline_during_synthesis_returns_the_sub_answers(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.subtasks = 2
    stub.inject("synthesizer", Fault(status=200, hang_s=4))
    result = reason(client, deadline_s=1, max_revisions=0).json()
    assert result["status"] == "partial"
    assert result["answer"].count("A worker answer with some words.") == 2
    assert result["fallbacks"][-1]["kind"] == "unsynthesized"
    assert result["timings"]["total_ms"] < 2500


def test_malformed_bodies_are_failed_calls_not_crashes(client: httpx.Client, stub: StubBackend) -> None:
    stub.inject("planner", Fault(status=200, raw="{not json"), Fault(status=200, raw='{"choices": []}'))
    response = reason(client)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"


def test_an_error_object_inside_a_200_stream(client: httpx.Client, stub: StubBackend) -> None:
    stream_error = 'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    truncated = 'data: {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"con'
    stub.inject("synthesizer", Fault(stream_raw=stream_error), Fault(stream_raw=truncated))
    response = reason(client, max_revisions=0)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"
    assert len(stub.calls_of("synthesizer")) == 2
