"""Structured output that adapts to the backend, and JSON parsing."""

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from graph import ModelCallError, RunContext
from graph.models import StructuredMode
from graph.schemas import Plan, plan_schema
from graph.state import Fallback
from graph.structured import call_structured, parse_json
from tests.conftest import stub_models
from tests.stub_backend import Fault, StubBackend

MESSAGES = [SystemMessage("You plan."), HumanMessage("Q?")]


def fast() -> RunContext:
    return RunContext(max_attempts=2, retry_initial_s=0.01, retry_max_s=0.02, timeout_s=5)


def formats(stub: StubBackend) -> list[str | None]:
    return [(c.body.get("response_format") or {}).get("type") for c in stub.calls]


async def test_a_rejected_json_schema_falls_back_to_json_object_for_good(stub: StubBackend) -> None:
    mode = StructuredMode("json_schema", adaptive=True)
    spec = stub_models(stub, structured=mode).planner
    stub.inject("planner", Fault(status=500), Fault(status=500))
    ctx, fallbacks = fast(), list[Fallback]()
    plan, error = await call_structured(
        spec, MESSAGES, ctx, Plan, plan_schema(3), node="planner", fallbacks=fallbacks
    )
    assert plan is not None and error is None
    assert formats(stub) == ["json_schema", "json_schema", "json_object"]
    assert [r["error"] is None for r in ctx.ledger] == [False, False, True], "failed tries are ledger rows"
    assert [f["kind"] for f in fallbacks] == ["structured_output_downgrade"]
    assert "json_schema" in fallbacks[0]["detail"] and "HTTP 500" in fallbacks[0]["detail"]
    assert mode.current == "json_object"

    again: list[Fallback] = []
    await call_structured(spec, MESSAGES, fast(), Plan, plan_schema(3), node="planner", fallbacks=again)
    assert formats(stub)[-1] == "json_object", "the mode that worked is remembered"
    assert again == []


async def test_then_prompt_only_json(stub: StubBackend) -> None:
    mode = StructuredMode("json_schema", adaptive=True)
    spec = stub_models(stub, structured=mode).planner
    stub.inject("planner", Fault(status=400), Fault(status=422))
    fallbacks: list[Fallback] = []
    plan, _ = await call_structured(
        spec, MESSAGES, fast(), Plan, plan_schema(3), node="planner", fallbacks=fallbacks
    )
    assert plan is not None
    assert formats(stub) == ["json_schema", "json_object", None]
    assert len(fallbacks) == 2 and mode.current == "none"


UNKNOWN_MODEL = {
    "error": {"message": "no such model", "type": "invalid_request_error", "code": "model_not_found"}
}


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        (StructuredMode("json_schema"), Fault(status=500)),
        (StructuredMode("json_schema", adaptive=True), Fault(status=401)),
        (StructuredMode("json_schema", adaptive=True), Fault(status=404)),
        (StructuredMode("json_schema", adaptive=True), Fault(status=400, body=UNKNOWN_MODEL)),
    ],
    ids=["set-explicitly", "auth-error", "not-found", "unknown-model"],
)
async def test_no_downgrade_when_set_explicitly_or_for_other_errors(
    stub: StubBackend, mode: StructuredMode, fault: Fault
) -> None:
    spec = stub_models(stub, structured=mode).planner
    stub.inject("planner", fault, fault)
    fallbacks: list[Fallback] = []
    with pytest.raises(ModelCallError):
        await call_structured(
            spec, MESSAGES, fast(), Plan, plan_schema(3), node="planner", fallbacks=fallbacks
        )
    assert mode.current == "json_schema" and fallbacks == []
    assert set(formats(stub)) == {"json_schema"}


async def test_no_downgrade_is_kept_when_no_lower_mode_works_either(stub: StubBackend) -> None:
    mode = StructuredMode("json_schema", adaptive=True)
    spec = stub_models(stub, structured=mode).planner
    stub.inject("planner", *[Fault(status=500)] * 6)
    fallbacks: list[Fallback] = []
    with pytest.raises(ModelCallError):
        await call_structured(
            spec, MESSAGES, fast(), Plan, plan_schema(3), node="planner", fallbacks=fallbacks
        )
    assert formats(stub) == ["json_schema", "json_schema", "json_object", "json_object", None, None]
    assert mode.current == "json_schema" and fallbacks == []


def test_parse_json_tolerates_fences_and_prose() -> None:
    plan = parse_json('Here you go:\n```json\n{"subquestions": ["a?", "b?"]}\n```', Plan)
    assert plan.subquestions == ["a?", "b?"]


@pytest.mark.parametrize(
    "text",
    ["no json here", '{"subquestions": []}', '{"subquestions": "a"}', '{"subquestions": ["a"'],
)
def test_parse_json_rejects_unusable_plans(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text, Plan)
