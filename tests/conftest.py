"""Shared fixtures: the scripted backend, models pointed at it, and the real HTTP app."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from api.backend.connect import Backend
from api.backend.embedded import free_port
from api.http.app import create_app
from api.http.server import server_config
from api.settings import Settings
from graph import Models, ModelSpec, Result, TiktokenCounter, openai_chat_model
from graph.calibration import Calibration
from graph.result import assemble
from tests.stub_backend import ROLES, StubBackend, StubOptions, model_name
from tests.support.runs import HELD, PLAN
from tests.support.services import redis_prefix, scratch_database

ROLE_MODELS = {f"{role}_model": model_name(role) for role in ROLES}
"""Settings that name each role's stub model (PLANNER_MODEL=stub-planner, ...)."""


@pytest.fixture
def stub() -> Iterator[StubBackend]:
    with StubBackend(StubOptions()) as backend:
        yield backend


def stub_models(
    stub: StubBackend,
    api_key: str = "sk-test",
    http_client: openai.DefaultAsyncHttpxClient | None = None,
    **spec: Any,
) -> Models:
    """One model per role, each named for its role: the stub answers by the model name. They
    share a calibration, as the models of one backend do (``api.backend.connect.build_models``)."""
    calibration = Calibration()

    def role(name: str) -> ModelSpec:
        model = model_name(name)
        chat = openai_chat_model(
            model=model, base_url=stub.base_url, api_key=api_key, timeout_s=10, http_client=http_client
        )
        return ModelSpec(chat=chat, name=model, calibration=calibration, **spec)

    return Models(
        planner=role("planner"), worker=role("worker"), critic=role("critic"), synthesizer=role("synthesizer")
    )


def empty_result(run_id: str) -> Result:
    """The result of a run stopped before it made any call."""
    return assemble(
        run_id=run_id,
        question="Q?",
        state=None,
        calls=[],
        question_tokens=0,
        question_exact=False,
        execution_ms=0.0,
        error=None,
        status="cancelled",
    )


def stub_backend(stub: StubBackend, api_key: str = "sk-test", **spec: Any) -> Backend:
    """A backend on the stub with its own connections, which the app closes on shutdown."""
    http_client = openai.DefaultAsyncHttpxClient()
    return Backend(
        models=stub_models(stub, api_key, http_client, **spec),
        counter=TiktokenCounter(),
        base_url=stub.base_url,
        embedded=False,
        api_key=api_key,
        http_client=http_client,
    )


class Service:
    """The real app served by uvicorn on a loopback port, in a background thread, configured
    as `reasoner serve` configures it."""

    def __init__(self, settings: Settings, backend: Backend | None) -> None:
        self.port = free_port()
        quiet = settings.model_copy(update={"host": "127.0.0.1", "log_level": "warning"})
        self.server = uvicorn.Server(server_config(create_app(settings, backend), quiet, port=self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Service":
        self.thread.start()
        deadline = time.monotonic() + 180  # the embedded model may need to start first
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        llm_base_url="http://unused.invalid/v1",
        **ROLE_MODELS,
        data_dir=tmp_path,
        llm_max_attempts=2,
        llm_retry_initial_s=0.01,
    )


@pytest.fixture
def service(stub: StubBackend, settings: Settings) -> Iterator[Service]:
    with Service(settings, stub_backend(stub)) as running:
        yield running


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


@pytest.fixture
def four_parts(stub: StubBackend) -> StubBackend:
    """The stub plans four parts and holds the last two workers (see ``tests.support.runs``)."""
    stub.options.plan = PLAN
    stub.options.slow = dict(HELD)
    return stub


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a new Postgres database of this test's own, dropped at the end."""
    with scratch_database() as url:
        yield url


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis prefix of this test's own."""
    with redis_prefix() as name:
        yield name


REPORT: list[str] = []
"""Figures measured by tests (load, latency), printed at the end of the run."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("measured")
        for line in REPORT:
            terminalreporter.write_line(line)
