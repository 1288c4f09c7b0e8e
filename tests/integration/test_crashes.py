"""A run that crashes on a bug of ours ends like any other: a terminal event, a stored result."""

import json
from typing import Any

import httpx
import pytest

from tests.support.sse import frames


@pytest.fixture
def broken_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr("api.runs.worker.execute", crash)


@pytest.mark.usefixtures("broken_engine")
def test_a_crash_ends_with_run_failed_internal_error(client: httpx.Client) -> None:
    response = client.post("/v1/reason", json={"question": "Q?"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "a bug in the engine" not in response.text, "no internals in the answer"
    run_id = client.get("/v1/runs").json()["data"][0]["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        last = [f for f in frames(events) if not f.comment][-1]
    assert last.event == "run.failed"
    assert last.data["error"]["kind"] == "internal_error"
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "failed"


@pytest.mark.usefixtures("broken_engine")
def test_the_openai_stream_sends_an_error_chunk(client: httpx.Client) -> None:
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "Q?"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        data = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert (error["code"], error["type"]) == ("internal_error", "server_error")
