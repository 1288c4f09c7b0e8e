"""Request and response models of the HTTP API."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Effort = Literal["low", "medium", "high"]


class ReasonRequest(BaseModel):
    """A question and how hard to work on it. Explicit fields win over ``reasoning_effort``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=100_000, examples=["Why is the sky blue?"])
    max_subtasks: int | None = Field(None, ge=1, le=64)
    max_revisions: int | None = Field(None, ge=0, le=10)
    reasoning_effort: Effort | None = None
    token_budget: int | None = Field(
        None, ge=1, le=100_000_000, description="most tokens the run may spend in all (total_tokens)"
    )
    deadline_s: float | None = Field(
        None, ge=1, le=86_400, description="seconds after which the run ends with what it has"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is empty")
        return value.strip()


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error from every endpoint, in OpenAI's shape."""

    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"] = "ok"
