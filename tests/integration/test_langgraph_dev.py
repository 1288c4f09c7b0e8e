"""`langgraph dev` (langgraph.json, LangGraph's in-memory server, its own venv) serves the graph
against the scripted backend, asked with LangGraph's own client (langgraph-sdk): Studio's views of
it load, a question costs what it costs through the service, and the run's output carries the
ledger's accounts."""

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from api.backend.embedded import free_port, stop_process
from tests.stub_backend import MODEL_ENV, MODEL_NAMES, StubBackend
from tests.support.served import Served

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = ROOT / ".venv-langgraph" / "bin" / "langgraph"

OFFLINE = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
"""No usage analytics, PyPI version check or LangSmith tracing: the server talks to the stub only."""
_THIS_TREE = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
"""The graph from this tree's code, ahead of the venv's editable install (another checkout's,
in a git worktree)."""

QUESTION = "What is 15 times 4, and is the result even?"
PARAMS = {"max_subtasks": 2, "max_revisions": 0}
"""Sent as the LangGraph run's context and as the service's request fields."""


@dataclass
class LangGraphDev:
    url: str
    stub: StubBackend
    log: Path


@pytest.fixture(scope="module")
def langgraph_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphDev]:
    """`langgraph dev` on a loopback port, its models on a stub of its own. It runs in a scratch
    directory: it keeps its threads in ``.langgraph_api/`` there."""
    if not LANGGRAPH.exists():
        pytest.fail("the LangGraph CLI is not installed: run `make install-langgraph`")
    work = tmp_path_factory.mktemp("langgraph-dev")
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_"))
        and k not in MODEL_ENV
    }
    port = free_port()
    command: list[str | Path] = [LANGGRAPH, "dev", "--no-browser", "--no-reload", "--port", str(port)]
    log = work / "langgraph-dev.log"
    with StubBackend() as stub, log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--config", ROOT / "langgraph.json"],
            cwd=work,
            env={**inherited, "LLM_BASE_URL": stub.base_url, **MODEL_ENV, **OFFLINE, **_THIS_TREE},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _answers(f"{url}/ok"):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"langgraph dev did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield LangGraphDev(url, stub, log)
        finally:
            stop_process(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _assistant(http: httpx.Client) -> str:
    found = http.post("/assistants/search", json={"graph_id": "reasoner"}).json()
    assert len(found) == 1, found
    return str(found[0]["assistant_id"])


def test_studio_draws_the_graph_and_its_forms(langgraph_dev: LangGraphDev) -> None:
    with httpx.Client(base_url=langgraph_dev.url, timeout=10) as http:
        assistant = _assistant(http)
        drawn = http.get(f"/assistants/{assistant}/graph")
        schemas = http.get(f"/assistants/{assistant}/schemas")
    assert drawn.status_code == 200, drawn.text
    nodes = {node["id"] for node in drawn.json()["nodes"]}
    assert nodes == {"__start__", "planner", "critic", "reviser", "synthesizer", "__end__"}
    edges = {(e["source"], e["target"]) for e in drawn.json()["edges"]}
    assert {("critic", "reviser"), ("reviser", "critic"), ("critic", "synthesizer")} <= edges
    assert schemas.status_code == 200, schemas.text
    assert schemas.json()["input_schema"]["required"] == ["question"]
    context = schemas.json()["context_schema"]["properties"]
    assert {"max_subtasks", "max_revisions", "max_output_tokens"} <= set(context)
    assert not {"budget", "ledger", "journal"} & set(context)  # the run's own accounts
    assert {"answer", "usage", "by_node"} <= set(schemas.json()["output_schema"]["properties"])
    assert "BlockingError" not in langgraph_dev.log.read_text()


def _billed(calls: list[Any]) -> dict[str, tuple[int, int, int]]:
    """Calls, prompt and completion tokens per role, as the stub billed them."""
    rows: dict[str, Counter[str]] = {}
    for call in calls:
        row = rows.setdefault(call.role, Counter())
        row.update(calls=1, prompt=call.prompt_tokens, completion=call.completion_tokens)
    return {role: (r["calls"], r["prompt"], r["completion"]) for role, r in rows.items()}


def test_a_question_costs_what_it_costs_through_the_service(
    langgraph_dev: LangGraphDev, tmp_path: Path
) -> None:
    stub = langgraph_dev.stub
    served = Served(stub, tmp_path / "data")
    try:
        stub.reset()
        with httpx.Client(timeout=30) as http:
            response = http.post(f"{served.url}/v1/reason", json={"question": QUESTION, **PARAMS})
        assert response.status_code == 200, response.text
    finally:
        served.stop()
    result = response.json()
    service_billed = _billed(stub.calls)

    stub.reset()
    values: dict[str, Any] = {}
    reported: dict[str, Counter[str]] = {}
    labels: list[tuple[str, str]] = []
    client = get_sync_client(url=langgraph_dev.url, timeout=30)
    for part in client.runs.stream(
        None,
        "reasoner",
        input={"question": QUESTION},
        context=PARAMS,
        stream_mode=["values", "messages-tuple"],
    ):
        assert part.event != "error", part.data
        if part.event == "values":
            values = part.data
        elif part.event == "messages":
            message, metadata = part.data
            role = MODEL_NAMES[metadata["ls_model_name"]]
            labels.append((role, metadata["langgraph_node"]))
            if message.get("usage_metadata"):
                row = reported.setdefault(role, Counter())
                usage = message["usage_metadata"]
                row.update(calls=1, prompt=usage["input_tokens"], completion=usage["output_tokens"])
    langgraph_billed = _billed(stub.calls)

    # The same run: the context reached the graph (two sub-questions, no critic), same answer.
    assert result["status"] == "completed"
    assert values["answer"] == result["answer"]
    assert values["plan"] == result["plan"] and len(result["plan"]) == 2
    assert "critic" not in langgraph_billed
    # The same tokens: as the service's ledger counts them, as the graph's output state and
    # LangGraph's stream report them to its client, and as the backend billed each run.
    assert values["by_node"] == result["by_node"]
    assert values["usage"] == result["usage"]
    by_node = {
        node: (row["calls"], row["prompt_tokens"], row["completion_tokens"])
        for node, row in result["by_node"].items()
        if row["calls"]
    }
    assert {role: (r["calls"], r["prompt"], r["completion"]) for role, r in reported.items()} == by_node
    assert langgraph_billed == service_billed == by_node
    assert sum(r["prompt"] + r["completion"] for r in reported.values()) == result["usage"]["total_tokens"]
    # Each call's messages name its own role, a worker's too (it runs inside the planner node).
    assert {role for role, _ in labels} == {"planner", "worker", "synthesizer"}
    assert all(role == node for role, node in labels), set(labels)


def test_runs_wait_ends_with_the_ledger(langgraph_dev: LangGraphDev) -> None:
    """What `runs.wait` returns (and Studio shows as the run's output): the answer, and the tokens
    per node that the backend billed."""
    stub = langgraph_dev.stub
    stub.reset()
    client = get_sync_client(url=langgraph_dev.url, timeout=30)
    output = client.runs.wait(None, "reasoner", input={"question": QUESTION}, context=PARAMS)
    assert isinstance(output, dict), output
    assert set(output) == {
        "question",
        "answer",
        "plan",
        "subanswers",
        "critique",
        "fallbacks",
        "usage",
        "by_node",
    }
    by_node = {
        node: (row["calls"], row["prompt_tokens"], row["completion_tokens"])
        for node, row in output["by_node"].items()
        if row["calls"]
    }
    assert by_node == _billed(stub.calls)
    usage = output["usage"]
    assert usage["total_tokens"] == sum(row["total_tokens"] for row in output["by_node"].values())
    assert usage["output_tokens"] == output["by_node"]["synthesizer"]["completion_tokens"]
    assert usage["cost_usd"] is None  # no PRICES_FILE
