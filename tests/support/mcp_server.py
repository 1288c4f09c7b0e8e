"""A small MCP server for the tests (the official SDK's MCPServer), over stdio or streamable HTTP:

    python tests/support/mcp_server.py               # stdio
    python tests/support/mcp_server.py http PORT     # http://127.0.0.1:PORT/mcp

It imports nothing of the project, so a client can start it as any operator's server.
"""

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("test-tools", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def environment() -> str:
    """The names of the variables in this server's environment."""
    return " ".join(sorted(os.environ))


@server.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this call came with (none over stdio)."""
    headers = ctx.headers
    return f"authorization={headers.get('authorization') if headers else None}"


@server.tool()
def refuse() -> str:
    """Always fails, with a message for the model."""
    raise ToolError("no, and here is why")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then says so."""
    await anyio.sleep(seconds)
    return f"slept {seconds} s"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
