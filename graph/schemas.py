"""Structured outputs the models must fill, validated with pydantic."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PlannedTask(BaseModel):
    """One task as the planner writes it; ``graph.plan`` checks ids, edges and wording."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str = ""
    question: str = ""
    depends_on: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """The planner's answer: tasks in order, each with the earlier tasks it needs.

    A bare string is taken as a task without dependencies (older prompts, small models).
    """

    model_config = ConfigDict(extra="ignore")

    subquestions: list[PlannedTask | str] = Field(min_length=1)

    def raw_tasks(self) -> list[dict[str, Any] | str]:
        """The tasks as written (``tools`` only where the planner wrote it)."""
        return [
            t.model_dump(exclude=None if "tools" in t.model_fields_set else {"tools"})
            if isinstance(t, PlannedTask)
            else t
            for t in self.subquestions
        ]


class Verdict(BaseModel):
    """The critic's judgement of one sub-answer."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    verdict: Literal["accept", "revise"]
    feedback: str = ""


class Critique(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdicts: list[Verdict]


def plan_schema(max_subtasks: int, tools: list[str] | None = None) -> dict[str, Any]:
    """JSON schema for a plan of at most ``max_subtasks`` tasks, tight enough for a grammar:
    ids and dependencies come from ``t1``…``tN``, and with ``tools``, each task names the ones
    it needs among them."""
    ids = [f"t{i}" for i in range(1, max_subtasks + 1)]
    schema = {
        "type": "object",
        "properties": {
            "subquestions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "enum": ids},
                        "question": {"type": "string", "minLength": 1},
                        "depends_on": {
                            "type": "array",
                            "items": {"type": "string", "enum": ids},
                            "maxItems": max_subtasks - 1,
                        },
                    },
                    "required": ["id", "question", "depends_on"],
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": max_subtasks,
            }
        },
        "required": ["subquestions"],
        "additionalProperties": False,
    }
    if tools:
        task = schema["properties"]["subquestions"]["items"]  # type: ignore[index]
        task["properties"]["tools"] = {"type": "array", "items": {"type": "string", "enum": tools}}
        task["required"].append("tools")
    return schema


def critique_schema(task_ids: list[str]) -> dict[str, Any]:
    """JSON schema for verdicts on exactly the given sub-answers."""
    return {
        "type": "object",
        "properties": {
            "verdicts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "task_id": {"type": "string", "enum": task_ids},
                        "verdict": {"type": "string", "enum": ["accept", "revise"]},
                        "feedback": {"type": "string"},
                    },
                    "required": ["task_id", "verdict", "feedback"],
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": len(task_ids),
            }
        },
        "required": ["verdicts"],
        "additionalProperties": False,
    }
