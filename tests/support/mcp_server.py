"""A small MCP server for the tests (the official SDK's MCPServer), over stdio or streamable HTTP:

    python tests/support/mcp_server.py               # stdio
    python tests/support/mcp_server.py http PORT     # http://127.0.0.1:PORT/mcp

It imports nothing of the project, so a client can start it as any operator's server;
``over_http`` runs it in a process of its own for the tests and the bench.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def over_http() -> Iterator[str]:
    """This server over streamable HTTP on a free loopback port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "http", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the test MCP server did not listen")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp/"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
