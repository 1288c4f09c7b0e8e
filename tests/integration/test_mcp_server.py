"""reasoner as an MCP server, called with the official `mcp` client: over streamable HTTP at
/mcp (behind the API keys) and over stdio (`reasoner mcp`): the answer and its usage, the
progress notifications in order, get_run, cancel, and a wrong key refused."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import MODEL_ENV, StubBackend

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-mcp-test"
QUESTION = {"question": "Why is the sky blue?"}


@pytest.fixture
def keyed(stub: StubBackend, settings: Settings) -> Any:
    stub.options.subtasks = 2
    with Service(settings.model_copy(update={"api_keys": SecretStr(KEY)}), stub_backend(stub)) as service:
        yield service


def http_client(service: Service, key: str = KEY) -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300)
    )
    return Client(streamable_http_client(f"{service.url}/mcp/", http_client=http))


async def test_reason_over_http_answers_with_its_usage_and_reports_progress(
    keyed: Service, stub: StubBackend
) -> None:
    reported: list[tuple[float, str]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        reported.append((done, message or ""))

    async with http_client(keyed) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        answered = await client.call_tool("reason", QUESTION, progress_callback=on_progress)
        run_id = answered.structured_content["run_id"]
        view = await client.call_tool("get_run", {"run_id": run_id})
    assert names == ["reason", "get_run"]
    assert not answered.is_error
    assert answered.content[0].text == "The final answer is 42."
    usage = answered.structured_content["usage"]
    assert usage["total_tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    # The client runs each notification's callback in a task of its own: their order is the
    # progress count's, not the callbacks'.
    # With the plan streamed, a sub-question may be answered before the whole plan is in.
    progress = [message for _, message in sorted(reported)]
    assert progress[0] == "planning" and progress[-1] == "writing"
    assert progress.index("planned 2 sub-question(s)") < progress.index("reviewing (round 1)")
    assert {"t1 answered", "t2 answered"} <= set(progress)
    assert view.structured_content["status"] == "completed"
    assert view.structured_content["result"]["answer"] == "The final answer is 42."


async def test_a_wrong_key_is_refused_and_runs_stay_their_owners(keyed: Service) -> None:
    refused = httpx.post(f"{keyed.url}/mcp/", json={}, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    async with http_client(keyed) as client:
        missing = await client.call_tool("get_run", {"run_id": "run_nope"})
    assert missing.is_error and "no run 'run_nope'" in missing.content[0].text


async def test_cancelling_the_request_cancels_the_run(keyed: Service, stub: StubBackend) -> None:
    stub.options.slow = {"Part": 30.0}
    answering = asyncio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if message == "answering":
            answering.set()

    async with http_client(keyed) as client:
        call = asyncio.create_task(client.call_tool("reason", QUESTION, progress_callback=on_progress))
        await asyncio.wait_for(answering.wait(), 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=keyed.url, headers=headers) as http:
        for _ in range(200):
            runs = (await http.get("/v1/runs")).json()["data"]
            if runs and runs[0]["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
    assert [r["status"] for r in runs] == ["cancelled"]


async def test_reasoner_mcp_serves_over_stdio(stub: StubBackend, tmp_path: Path) -> None:
    stub.options.subtasks = 1
    env = {"LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    params = StdioServerParameters(command=sys.executable, args=["-m", "api.cli", "mcp"], env=env, cwd=ROOT)
    async with Client(params) as client:
        answered = await client.call_tool("reason", {**QUESTION, "reasoning_effort": "low"})
    assert answered.content[0].text == "The final answer is 42."
    assert answered.structured_content["status"] == "completed"
    assert answered.structured_content["by_node"]["worker"]["calls"] == len(stub.calls_of("worker"))
