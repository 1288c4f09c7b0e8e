"""The operator's MCP servers (``MCP_SERVERS_FILE``): connected when the process starts, for its
whole life, and their tools offered to the workers beside the calculator.

The file has the shape MCP clients share, so a block can be pasted from another client's
configuration: ``{"mcpServers": {"name": {"command": ..., "args": [...], "env": {...}}}}`` for a
server started over stdio, ``{"url": ..., "headers": {...}}`` for streamable HTTP. Connections go
through the official ``mcp`` SDK's ``Client``: one session per server, shared by every run's
calls (langchain-mcp-adapters opens a session, and starts a stdio server, per tool call unless
each session is managed by hand, and its LangChain tools would be converted back to this
contract anyway). A stdio server gets a clean environment: the SDK's short list of safe
variables (HOME, PATH, USER, ...) and its own ``env``, none of the service's secrets. A server
that does not start is logged and reported by ``/readyz`` as degraded; the others serve.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.config_files import read_config
from graph.tools import Tool, ToolError

log = logging.getLogger(__name__)


class ServerEntry(BaseModel):
    """One server of the file: ``command`` (stdio) or ``url`` (streamable HTTP). Other keys that
    clients write (``type``, ``disabled``, …) are ignored."""

    model_config = ConfigDict(extra="ignore")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> "ServerEntry":
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        return self


class ServersFile(BaseModel):
    mcp_servers: dict[str, ServerEntry] = Field(alias="mcpServers")


def read_servers(path: Path) -> dict[str, ServerEntry]:
    """The servers of ``MCP_SERVERS_FILE``; a ConfigurationError says what is wrong and where."""
    return read_config("MCP_SERVERS_FILE", path, ServersFile).mcp_servers


@dataclass
class McpServers:
    """The connected servers' tools by name, and the servers that did not start, with why."""

    tools: dict[str, Tool] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def open_mcp_servers(servers: dict[str, ServerEntry], timeout_s: float) -> AsyncIterator[McpServers]:
    """Connect to every server (each within ``timeout_s``), and close them all at the end, in the
    task that opened them (the SDK's cancel scopes require it)."""
    connected = McpServers()
    async with AsyncExitStack() as stack:
        for name, entry in servers.items():
            try:
                async with asyncio.timeout(timeout_s):
                    client = await stack.enter_async_context(_client(stack, entry))
                    listed = (await client.list_tools()).tools
            except Exception as exc:  # a server that does not start is no reason not to serve
                connected.failed[name] = _reason(exc)
                log.warning("an MCP server did not start", extra={"server": name, "error": _reason(exc)})
                continue
            for tool in listed:
                key = tool.name if tool.name not in connected.tools else f"{name}_{tool.name}"
                run = partial(_call, client, tool.name)
                connected.tools[key] = Tool(key, tool.description or "", dict(tool.input_schema), run)
            log.info("MCP server connected", extra={"server": name, "tools": [t.name for t in listed]})
        yield connected


def _client(stack: AsyncExitStack, entry: ServerEntry) -> Client:
    if entry.command is not None:
        return Client(StdioServerParameters(command=entry.command, args=entry.args, env=entry.env))
    http = httpx2.AsyncClient(headers=entry.headers, timeout=httpx2.Timeout(30, read=300))
    stack.push_async_callback(http.aclose)
    return Client(streamable_http_client(entry.url or "", http_client=http))


async def _call(client: Client, name: str, arguments: dict[str, Any]) -> str:
    """One call; the tool's error result is a ToolError with its text."""
    result = await client.call_tool(name, arguments)
    text = "\n".join(part.text for part in result.content if isinstance(part, TextContent))
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content)
    if result.is_error:
        raise ToolError(text or "the tool failed")
    return text


def _reason(exc: BaseException) -> str:
    """The innermost message of ``exc`` (the SDK raises exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
