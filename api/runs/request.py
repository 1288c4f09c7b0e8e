"""What a run is asked to do: a question and how hard to work on it."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Effort = Literal["low", "medium", "high"]

NOT_BLANK = "[^\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
"""A character that is not whitespace to ``str.strip``: the OpenAPI document's pattern for a
question that is not blank (the check itself is ``_not_blank``)."""


class ReasonRequest(BaseModel):
    """A question and how hard to work on it. Explicit fields win over ``reasoning_effort``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1,
        max_length=100_000,
        examples=["Why is the sky blue?"],
        json_schema_extra={"pattern": NOT_BLANK},
    )
    max_subtasks: int | None = Field(None, ge=1, le=64)
    max_revisions: int | None = Field(None, ge=0, le=10)
    reasoning_effort: Effort | None = None
    token_budget: int | None = Field(
        None, ge=1, le=100_000_000, description="most tokens the run may spend in all (total_tokens)"
    )
    deadline_s: float | None = Field(
        None, ge=1, le=86_400, description="seconds after which the run ends with what it has"
    )
    tools: list[str] | None = Field(
        None,
        max_length=64,
        description="the tools the run's workers may call, from those the service offers; [] = none",
    )
    cost_budget_usd: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="most US dollars the run may cost; needs a price for every model (PRICES_FILE)",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty")
        return value.strip()
