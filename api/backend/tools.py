"""The tools this process offers its runs' workers: the built-in calculator (and the tools of
the MCP servers it is connected to), narrowed by the ``TOOLS`` setting."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.backend.mcp_client import McpServers, open_mcp_servers, read_servers
from api.settings import ConfigurationError, Settings
from graph.tools import CALCULATOR, Tools

BUILT_IN: Tools = {CALCULATOR.name: CALCULATOR}

log = logging.getLogger(__name__)


def offered_tools(
    settings: Settings, *, embedded: bool, connected: Tools | None = None, degraded: bool = False
) -> Tools:
    """Every tool there is when ``TOOLS`` is unset (none with the embedded model: SmolLM2-135M
    does not call tools reliably), else the ones it names. ``connected``: the MCP servers' tools;
    ``degraded``: a server did not start, so a name in ``TOOLS`` may be one of its tools (left
    out with a warning, where it would otherwise stop the start)."""
    available = {**BUILT_IN, **(connected or {})}
    names = settings.tool_names
    if names is None:
        return {} if embedded else available
    unknown = [name for name in names if name not in available]
    if unknown and not degraded:
        raise ConfigurationError(
            f"TOOLS names {', '.join(unknown)}, which is no tool here (the tools: {', '.join(available)})"
        )
    if unknown:
        log.warning(
            "TOOLS names tools no server offers: an MCP server did not start", extra={"tools": unknown}
        )
    return {name: available[name] for name in names if name in available}


@asynccontextmanager
async def connected_tools(settings: Settings) -> AsyncIterator[McpServers]:
    """The MCP servers of ``MCP_SERVERS_FILE`` connected for the duration (none when unset)."""
    servers = read_servers(settings.mcp_servers_file) if settings.mcp_servers_file else {}
    async with open_mcp_servers(servers, settings.mcp_connect_timeout_s) as connected:
        yield connected
