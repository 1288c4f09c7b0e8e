"""MCP servers as the operator configures them (MCP_SERVERS_FILE): a server over stdio with a
clean environment, one over streamable HTTP with its headers, one that does not start, and their
tools offered to the workers through the real app."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.backend.mcp_client import ServerEntry, open_mcp_servers, read_servers
from api.settings import ConfigurationError, Settings
from graph.tools import invoke
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend
from tests.support.mcp_server import over_http

SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"
STDIO = ServerEntry(command=sys.executable, args=[str(SERVER)], env={"GREETING": "hello"})


@pytest.fixture
def http_server() -> Iterator[str]:
    with over_http() as url:
        yield url


async def test_a_stdio_server_gets_a_clean_environment_and_its_tools_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_API_KEY", "sk-secret")
    async with open_mcp_servers({"local": STDIO}, timeout_s=30) as mcp:
        assert list(mcp.tools) == ["add", "environment", "whoami", "refuse", "slow"]
        assert mcp.tools["add"].parameters["required"] == ["a", "b"]
        added = await invoke(mcp.tools, "add", {"a": 2, "b": 40}, timeout_s=10, max_chars=100)
        env = await invoke(mcp.tools, "environment", {}, timeout_s=10, max_chars=1000)
        refused = await invoke(mcp.tools, "refuse", {}, timeout_s=10, max_chars=100)
        slow = await invoke(mcp.tools, "slow", {"seconds": 5}, timeout_s=0.5, max_chars=100)
        again = await invoke(mcp.tools, "add", {"a": 1, "b": 1}, timeout_s=10, max_chars=100)
    assert added.result == "42"
    assert "GREETING" in env.result.split() and "LLM_API_KEY" not in env.result.split()
    assert refused.error is not None and "no, and here is why" in refused.error
    assert slow.error == "the tool did not answer within 0.5 s"
    assert again.result == "2", "the session outlives a call cut by its timeout"


async def test_an_http_server_gets_its_headers(http_server: str) -> None:
    entry = ServerEntry(url=http_server, headers={"Authorization": "Bearer mcp-key"})
    async with open_mcp_servers({"remote": entry}, timeout_s=30) as mcp:
        said = await invoke(mcp.tools, "whoami", {}, timeout_s=10, max_chars=100)
    assert said.result == "authorization=Bearer mcp-key"


async def test_a_server_that_does_not_start_is_reported_and_the_others_serve() -> None:
    servers = {"gone": ServerEntry(command="/nonexistent/mcp-server"), "local": STDIO}
    async with open_mcp_servers(servers, timeout_s=30) as mcp:
        assert "add" in mcp.tools
    assert list(mcp.failed) == ["gone"] and "No such file" in mcp.failed["gone"]


def test_the_file_takes_blocks_pasted_from_other_clients_and_says_what_is_wrong(tmp_path: Path) -> None:
    pasted = tmp_path / "mcp.json"
    pasted.write_text(json.dumps({"mcpServers": {
        "files": {"type": "stdio", "command": "npx", "args": ["-y", "server"], "env": {"A": "1"}},
        "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer x"}},
    }}))  # fmt: skip
    servers = read_servers(pasted)
    assert servers["files"].command == "npx" and servers["remote"].headers == {"Authorization": "Bearer x"}
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("mcpServers:\n  both:\n    command: x\n    url: https://example.com\n")
    with pytest.raises(ConfigurationError, match=r"MCP_SERVERS_FILE .*mcpServers.both: .*either command"):
        read_servers(wrong)


def test_the_app_offers_the_servers_tools_and_readyz_says_which_did_not_start(
    stub: StubBackend, settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "local": STDIO.model_dump(exclude_none=True), "gone": {"command": "/nonexistent/mcp-server"},
    }}))  # fmt: skip
    configured = settings.model_copy(update={"mcp_servers_file": config})
    with Service(configured, stub_backend(stub)) as service, httpx.Client(base_url=service.url) as http:
        ready = http.get("/readyz").json()
        answered = http.post("/v1/reason", json={"question": "Q?", "max_subtasks": 1, "max_revisions": 0})
    assert ready["status"] == "degraded" and "gone" in ready["detail"]
    assert answered.status_code == 200
    offered = [t["function"]["name"] for t in stub.calls_of("worker")[0].body["tools"]]
    assert offered == ["calculator", "add", "environment", "whoami", "refuse", "slow"]
