"""The scripted stub's tool calling: a worker offered the ``calculator`` whose sub-question says
``calculate: <expression>`` asks the calculator for that expression, then answers from what
the tool returned.

In the expression, ``{t1}`` stands for the number the dependency ``t1`` answered with (the last
number of its answer), so a chain of steps each computes on the one before: a plan of
``calculate: 17 * 3``, ``calculate: {t1} + 9`` and ``calculate: {t2} / 4`` ends exactly at 15.
"""

import json
import re
import uuid
from typing import Any

CALCULATE = re.compile(r"calculate:\s*(.+?)\s*\??\s*$", re.IGNORECASE | re.DOTALL)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_DATA_BLOCKS = re.compile(r"<(tool_result|tool_error)\b.*?</\1>", re.DOTALL)


def offers(body: dict[str, Any], tool: str) -> bool:
    """Whether the request offers the model the tool ``tool``."""
    return any((t.get("function") or {}).get("name") == tool for t in body.get("tools") or [])


def tool_result(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last tool message, if the conversation ends with tool results."""
    if not messages or messages[-1].get("role") != "tool":
        return None
    content = str(messages[-1]["content"])
    found = re.search(r"<tool_(?:result|error)[^>]*>\s*(.*?)\s*</tool_", content, re.DOTALL)
    return found.group(1) if found else content


def expression_for(subquestion: str, prompt: str) -> str | None:
    """The expression a ``calculate:`` sub-question asks for, with each ``{tN}`` replaced by the
    number its dependency answered; None if the sub-question asks for no calculation."""
    asked = CALCULATE.search(subquestion)
    if asked is None:
        return None

    def answered(match: re.Match[str]) -> str:
        block = re.search(
            rf'<dependency task_id="{match.group(1)}">.*?<answer>(.*?)</answer>', prompt, re.DOTALL
        )
        numbers = NUMBER.findall(block.group(1)) if block else []
        return f"({numbers[-1]})" if numbers else "(unknown)"

    return re.sub(r"\{(t\d+)\}", answered, asked.group(1))


def calculator_call(expression: str) -> dict[str, Any]:
    """An assistant message asking for the calculator."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": "calculator", "arguments": json.dumps({"expression": expression})},
            }
        ],
    }


def injected(messages: list[dict[str, Any]]) -> bool:
    """Whether "reply PWNED" appears in the conversation outside the tool data blocks (where a
    model that obeys what it reads would act on it)."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return "reply PWNED" in _DATA_BLOCKS.sub("", text)
