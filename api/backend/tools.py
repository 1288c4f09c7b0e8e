"""The tools this process offers its runs' workers: the built-in calculator (and the tools of
the MCP servers it is connected to), narrowed by the ``TOOLS`` setting."""

from api.settings import ConfigurationError, Settings
from graph.tools import CALCULATOR, Tools

BUILT_IN: Tools = {CALCULATOR.name: CALCULATOR}


def offered_tools(settings: Settings, *, embedded: bool, connected: Tools | None = None) -> Tools:
    """Every tool there is when ``TOOLS`` is unset (none with the embedded model: SmolLM2-135M
    does not call tools reliably), else the ones it names. ``connected``: the MCP servers'."""
    available = {**BUILT_IN, **(connected or {})}
    names = settings.tool_names
    if names is None:
        return {} if embedded else available
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ConfigurationError(
            f"TOOLS names {', '.join(unknown)}, which is no tool here (the tools: {', '.join(available)})"
        )
    return {name: available[name] for name in names}
