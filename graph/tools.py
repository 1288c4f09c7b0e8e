"""What a worker may call besides its model: the tool contract, the built-in calculator, and one
tool call run within its limits.

A tool is a name, a one-line description, a JSON schema of its arguments and a coroutine that
returns text. The service builds the tools a run may use (the calculator, and each MCP server's
tools through ``api/backend/mcp_client.py``) and passes them in the run's context: the graph
never connects to anything itself.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import AIMessage

from graph.calculator import CalculatorError, calculate


class ToolError(Exception):
    """A tool call that went wrong in a way the model should read (a bad expression, a server's
    error); it is given to the model as the call's result, never raised past the worker."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    """The JSON schema of the arguments (an object)."""
    run: Callable[[dict[str, Any]], Awaitable[str]]

    def openai_schema(self) -> dict[str, Any]:
        """The tool as OpenAI's chat completions API declares it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


Tools = Mapping[str, Tool]
"""The tools a run may use, by name."""


async def _calculate(arguments: dict[str, Any]) -> str:
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError('the calculator takes {"expression": "<arithmetic>"}')
    try:
        return calculate(expression)
    except CalculatorError as exc:
        raise ToolError(str(exc)) from None


CALCULATOR = Tool(
    name="calculator",
    description=(
        "Evaluate arithmetic exactly: + - * / // % ** (or ^), parentheses, decimals, fractions, "
        "percentages (15% of 80), sqrt, abs, round, floor, ceil, min, max, log, ln, exp, sin, cos, "
        "tan, factorial, gcd, lcm, pi, e."
    ),
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "for example (17 * 3) + 12.5%"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    run=_calculate,
)


@dataclass(frozen=True)
class ToolRequest:
    """One tool call a model's reply asked for. ``error``: its arguments could not be read."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call returned (``result``) or why it did not (``error``), as the model will
    read it: at most ``max_chars`` characters."""

    result: str
    error: str | None
    duration_ms: float


async def invoke(
    tools: Tools, name: str, arguments: dict[str, Any], *, timeout_s: float, max_chars: int
) -> ToolOutcome:
    """Call one tool within its time limit. Every way it can fail (an unknown tool, bad
    arguments, an error of the tool or of its server, the time limit) is an outcome with an
    error, for the model to read; only cancellation propagates."""
    started = time.perf_counter()
    tool = tools.get(name)
    try:
        if tool is None:
            raise ToolError(f"there is no tool {name!r} (tools: {', '.join(tools) or 'none'})")
        async with asyncio.timeout(timeout_s):
            result, error = await tool.run(arguments), None
    except ToolError as exc:
        result, error = "", str(exc) or type(exc).__name__
    except TimeoutError:
        result, error = "", f"the tool did not answer within {timeout_s:g} s"
    except Exception as exc:  # a tool's own failure: the model reads it, the run goes on
        result, error = "", f"the tool failed: {type(exc).__name__}: {exc}"
    duration = round((time.perf_counter() - started) * 1000, 2)
    error = None if error is None else cut(error, max_chars)
    return ToolOutcome(result=cut(result, max_chars), error=error, duration_ms=duration)


@dataclass
class Turn:
    """A model's reply within a tool loop: its text, the tools it asked for, and the outcomes of
    those calls so far. The journal keeps it whole (``dump``) under the call's ``seq``, and a
    resumed run reads it back (``load``): a tool call whose outcome it holds is not made again."""

    text: str
    requests: list[ToolRequest]
    outcomes: dict[str, ToolOutcome] = field(default_factory=dict)

    def dump(self) -> str:
        return json.dumps(
            {
                "text": self.text,
                "requests": [asdict(r) for r in self.requests],
                "outcomes": {i: asdict(o) for i, o in self.outcomes.items()},
            }
        )

    @classmethod
    def load(cls, output: str) -> "Turn":
        data = json.loads(output)
        return cls(
            text=data["text"],
            requests=[ToolRequest(**r) for r in data["requests"]],
            outcomes={i: ToolOutcome(**o) for i, o in data["outcomes"].items()},
        )


def requests_of(message: AIMessage) -> list[ToolRequest]:
    """The tool calls a reply asks for; one whose arguments are not JSON is kept with an error."""
    asked = [
        ToolRequest(c["id"] or f"call_{i}", c["name"], c["args"]) for i, c in enumerate(message.tool_calls)
    ]
    for i, bad in enumerate(message.invalid_tool_calls, start=len(asked)):
        error = f"its arguments are not a JSON object: {bad.get('error') or bad.get('args')}"
        asked.append(ToolRequest(bad.get("id") or f"call_{i}", bad.get("name") or "", {}, error))
    return asked


def cut(text: str, max_chars: int) -> str:
    """``text``, cut to ``max_chars`` characters with a note of how much there was."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [cut at {max_chars} of {len(text)} characters]"
