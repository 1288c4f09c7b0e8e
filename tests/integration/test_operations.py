"""Readiness, the OpenAPI document, and the page."""

import httpx

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend


def test_readyz_when_the_backend_answers(client: httpx.Client) -> None:
    assert client.get("/readyz").status_code == 200


def test_readyz_when_the_backend_is_gone(stub: StubBackend, settings: Settings) -> None:
    backend = stub_backend(stub)
    stub.stop()
    with Service(settings, backend) as service, httpx.Client(base_url=service.url) as http:
        response = http.get("/readyz")
        assert http.get("/healthz").status_code == 200
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_openapi_types_every_route_and_event(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = [
        "/v1/reason", "/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/cancel", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz",
    ]  # fmt: skip
    for path in expected:
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    for name in [
        "StreamEvent",
        "ReasonRequest",
        "ErrorResponse",
        "RunView",
        "ChatCompletion",
        "TaskCompleted",
    ]:
        assert name in schemas, name
    assert client.get("/docs").status_code == 200


def test_page_is_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "<textarea" in page.text
    assert client.get("/static/app.js").status_code == 200
