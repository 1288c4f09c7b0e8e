"""The scripted backend routes by model name, never by prompt text, and refuses other models."""

import json

import httpx
import pytest

from tests.stub_backend import MODEL_ENV, ROLES, Fault, StubBackend, model_name


def ask(stub: StubBackend, model: str | None) -> httpx.Response:
    # A planner's prompt: under the old prompt sniffing every call here was the planner's.
    messages = [
        {"role": "system", "content": "You are the planner of a team."},
        {"role": "user", "content": '<subanswer task_id="t1">x</subanswer>'},
    ]
    return httpx.post(f"{stub.base_url}/chat/completions", json={"model": model, "messages": messages})


def test_the_model_name_picks_the_role_whatever_the_prompt_says(stub: StubBackend) -> None:
    replies = {}
    for role in ROLES:
        response = ask(stub, model_name(role))
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model_name(role)
        replies[role] = response.json()["choices"][0]["message"]["content"]
    assert [c.role for c in stub.calls] == list(ROLES)
    assert json.loads(replies["planner"]) == {
        "subquestions": ["Part 1 of the question?", "Part 2 of the question?", "Part 3 of the question?"]
    }
    assert json.loads(replies["critic"]) == {
        "verdicts": [{"task_id": "t1", "verdict": "accept", "feedback": "more detail"}]
    }
    assert replies["worker"] == "A worker answer with some words."
    assert replies["synthesizer"] == "The final answer is 42."


@pytest.mark.parametrize("model", ["stub-model", "stub", "gpt-4o-mini", "", None])
def test_any_other_model_is_refused_and_recorded(stub: StubBackend, model: str | None) -> None:
    response = ask(stub, model)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert all(
        name in error["message"]
        for name in ("stub-planner", "stub-worker", "stub-critic", "stub-synthesizer")
    )
    assert [(c.role, c.status) for c in stub.calls] == [("unknown", 400)]


def test_models_lists_the_role_names(stub: StubBackend) -> None:
    listed = httpx.get(f"{stub.base_url}/models").json()
    assert [m["id"] for m in listed["data"]] == [model_name(role) for role in ROLES]
    assert MODEL_ENV == {
        "PLANNER_MODEL": "stub-planner",
        "WORKER_MODEL": "stub-worker",
        "CRITIC_MODEL": "stub-critic",
        "SYNTHESIZER_MODEL": "stub-synthesizer",
    }


def test_faults_are_queued_only_for_roles_that_exist(stub: StubBackend) -> None:
    with pytest.raises(ValueError, match="no such role"):
        stub.inject("reviewer", Fault(status=500))
    with pytest.raises(ValueError, match="no such role"):
        model_name("reviewer")
