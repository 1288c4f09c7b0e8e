"""The OpenAPI document is what the service does: schemathesis with every check (`--checks all`)
against the app in this process, on the scripted backend."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.core.failures import Failure
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python import asgi

from api.http.app import create_app
from api.settings import Settings
from tests.conftest import ROLE_MODELS, stub_backend
from tests.stub_backend import StubBackend

EXAMPLES = 30
"""Examples per operation and phase: the whole run stays under a minute on two cores."""

BEYOND_A_SCHEMA = frozenset(
    {
        "question_too_long",
        "budget_too_small",
        "no_price",
        "invalid_messages",
        "invalid_range",
        "tool_not_offered",
    }
)
"""The 400s that depend on what no JSON Schema can state: the question's size in tokens, the
budget that question needs, the prices and the tools the service was given, the conversation as
a whole (its last message is the user's), two parameters together (`since` after `until`). Each is named in
the document's 400 response; any other 400 for a request the schema calls valid is a failure."""


def refused_beyond_a_schema(failure: Failure, response: schemathesis.Response) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return False
    return json.loads(response.content)["error"]["code"] in BEYOND_A_SCHEMA


KEY = "openapi-key"


@pytest.fixture
def app(stub: StubBackend, tmp_path: Path) -> Iterator[FastAPI]:
    """The app with an API key, so that schemathesis can check that its routes enforce it."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        llm_base_url="http://unused.invalid/v1",
        **ROLE_MODELS,
        data_dir=tmp_path,
        api_keys=KEY,
    )
    served = create_app(settings, stub_backend(stub))
    yield served
    asgi.shutdown_lifespans()


# The app's runs draw from the global random generator (LangGraph's uuid6) on schemathesis's
# event-loop thread while hypothesis draws here, which hypothesis takes for a strategy using it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_the_service_does_what_its_openapi_document_says(app: FastAPI) -> None:
    config = schemathesis.Config()
    config.update(seed=20, max_failures=None)
    config.projects.override.update(headers={"Authorization": f"Bearer {KEY}"})
    config.projects.override.checks.update(included_check_names=["all"])
    config.projects.override.generation.update(max_examples=EXAMPLES, database="none")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    @schema.hook
    def filter_failure(
        context: schemathesis.HookContext,
        failure: Failure,
        case: schemathesis.Case,
        response: schemathesis.Response,
    ) -> bool:
        return not refused_beyond_a_schema(failure, response)

    cases, failures, errors = 0, [], []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for nodes in event.recorder.checks.values():
                failures += [
                    f"{event.recorder.label}: {node.name}: {node.failure_info.failure.title}\n"
                    f"{node.failure_info.code_sample}"
                    for node in nodes
                    if node.status == Status.FAILURE and node.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(event))
    assert not errors
    assert not failures, "\n\n".join(sorted(set(failures)))
    assert cases > 100


@pytest.mark.parametrize("value", ["0", "1700000000", "2026-1-1", "2026-01-01T00:00:00"])
def test_usage_dates_are_days_as_the_document_says(client: httpx.Client, value: str) -> None:
    response = client.get("/v1/usage", params={"until": value})
    assert response.status_code == 422, "format: date is YYYY-MM-DD, not a Unix time"
    assert response.json()["error"]["code"] == "invalid_body"


def test_usage_from_the_first_day_there_is(client: httpx.Client) -> None:
    usage = client.get("/v1/usage", params={"until": "0001-01-05"})
    assert usage.status_code == 200
    assert (usage.json()["since"], usage.json()["until"]) == ("0001-01-01", "0001-01-05")


@pytest.mark.parametrize(("header", "status"), [("", 200), ("0", 200), ("1" * 15, 204), ("1" * 16, 400)])
def test_last_event_id_as_the_document_says(client: httpx.Client, header: str, status: int) -> None:
    run_id = client.post("/v1/reason", json={"question": "Q?"}).json()["run_id"]
    response = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": header})
    assert response.status_code == status
