"""The whole service on the real embedded model (SmolLM2-135M via llama.cpp): structure, not wording."""

import asyncio
from pathlib import Path

import httpx
import pytest

from api.backend.embedded import LocalModelServer
from api.settings import Settings
from tests.conftest import Service

pytestmark = pytest.mark.e2e

CAP = 40


def test_embedded_model_end_to_end(tmp_path: object) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        llm_base_url=None,
        data_dir=tmp_path,
        max_output_tokens=CAP,
        max_subtasks=2,
        max_revisions=1,
    )
    with Service(settings, backend=None) as service, httpx.Client(base_url=service.url, timeout=300) as http:
        response = http.post("/v1/reason", json={"question": "What is 12 times 7, and what is 5 plus 9?"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] in ("completed", "partial")
    assert 1 <= len(result["plan"]) <= 2
    assert result["answer"].strip()
    calls = result["calls"]
    assert {c["node"] for c in calls} >= {"planner", "worker", "synthesizer"}
    assert all(c["completion_tokens"] <= CAP for c in calls), "the output cap reaches llama.cpp"
    assert not any(c["estimated"] for c in calls), "llama.cpp reports usage on non-streamed calls"
    usage = result["usage"]
    assert usage["input_tokens_exact"] is True
    answered = [c for c in calls if c["node"] == "synthesizer" and c["error"] is None]
    assert usage["output_tokens"] == sum(c["completion_tokens"] for c in answered)
    assert usage["total_tokens"] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)
    assert usage["total_tokens"] == sum(n["total_tokens"] for n in result["by_node"].values())
    assert usage["reasoning_tokens"] > 0


def test_llama_cpp_python_as_a_remote_backend_with_nothing_else_set(tmp_path: Path) -> None:
    """`python -m llama_cpp.server` started by hand, then LLM_BASE_URL and LLM_MODEL only: its
    server answers json_schema with HTTP 500, so the run downgrades and says so."""
    server = LocalModelServer(None, n_ctx=2048, startup_s=120, log_dir=tmp_path)
    asyncio.run(server.start())
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            llm_base_url=server.base_url,
            llm_model="x",
            data_dir=tmp_path,
            max_output_tokens=CAP,
            max_subtasks=1,
            max_revisions=0,
            llm_retry_initial_s=0.05,
        )
        with (
            Service(settings, backend=None) as service,
            httpx.Client(base_url=service.url, timeout=300) as http,
        ):
            response = http.post("/v1/reason", json={"question": "What is 12 times 7?"})
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["answer"].strip()
    downgrades = [f for f in result["fallbacks"] if f["kind"] == "structured_output_downgrade"]
    assert downgrades and "json_schema" in downgrades[0]["detail"]
    assert not any(c["estimated"] for c in result["calls"]), "usage is exact: nothing was streamed"
    assert result["usage"]["input_tokens_exact"] is True
