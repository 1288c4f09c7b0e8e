"""Structured outputs the models must fill, validated with pydantic."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Plan(BaseModel):
    """The planner's answer: independent sub-questions, in order."""

    model_config = ConfigDict(extra="ignore")

    subquestions: list[str] = Field(min_length=1)

    @field_validator("subquestions")
    @classmethod
    def _non_blank(cls, value: list[str]) -> list[str]:
        cleaned = [q.strip() for q in value if q.strip()]
        if not cleaned:
            raise ValueError("every sub-question is blank")
        return cleaned


class Verdict(BaseModel):
    """The critic's judgement of one sub-answer."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    verdict: Literal["accept", "revise"]
    feedback: str = ""


class Critique(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdicts: list[Verdict]


def plan_schema(max_subtasks: int) -> dict[str, Any]:
    """JSON schema for a plan of at most ``max_subtasks`` items (tight, so grammars can enforce it)."""
    return {
        "type": "object",
        "properties": {
            "subquestions": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": max_subtasks,
            }
        },
        "required": ["subquestions"],
        "additionalProperties": False,
    }


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
