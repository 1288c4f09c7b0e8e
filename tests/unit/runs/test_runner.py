"""The runner without HTTP: what it refuses, and cancelling a run wherever it is."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.runs.errors import Conflict, ShuttingDown
from api.runs.request import ReasonRequest
from api.runs.service import RunService, run_service
from api.settings import Settings
from api.storage.factory import open_store
from tests.conftest import stub_backend
from tests.stub_backend import StubBackend


@pytest.fixture
async def service(stub: StubBackend, settings: Settings) -> AsyncIterator[RunService]:
    store = await open_store(settings)
    backend = stub_backend(stub)
    service = run_service(settings, backend, store)
    await service.runner.start(take_up=False)
    try:
        yield service
    finally:
        await service.runner.shutdown(0, leave_to_resume=False)
        await store.close()
        await backend.aclose()


QUESTION = ReasonRequest(question="Why is the sky blue?", max_revisions=0)


async def test_a_live_run_is_cancelled_here(service: RunService, stub: StubBackend) -> None:
    stub.options.latency_s = 0.5
    run_id = (await service.runner.submit(QUESTION)).run_id
    live = service.registry.get(run_id)
    assert live is not None
    while live.status != "running":
        await asyncio.sleep(0.01)
    assert await service.runner.cancel_anywhere(run_id) == "cancelled"
    assert (await service.lookup.wait(run_id))["status"] == "cancelled"
    assert service.registry.active == 0


async def test_a_finished_run_cannot_be_cancelled(service: RunService) -> None:
    run_id = (await service.runner.submit(QUESTION)).run_id
    await service.lookup.wait(run_id)
    with pytest.raises(Conflict) as finished:
        await service.runner.cancel_anywhere(run_id)
    assert finished.value.code == "run_finished"


async def test_a_run_of_another_process_on_a_store_that_is_not_shared_is_left_to_it(
    service: RunService, settings: Settings
) -> None:
    await service.store.create("run_elsewhere", "Q?", {"question": "Q?"}, lease_s=settings.lease_s)
    with pytest.raises(Conflict) as elsewhere:
        await service.runner.cancel_anywhere("run_elsewhere")
    assert elsewhere.value.code == "run_elsewhere"
    assert "run run_elsewhere is queued in another process" in elsewhere.value.message


async def test_a_process_that_shuts_down_takes_no_new_runs(service: RunService) -> None:
    await service.runner.shutdown(0)
    with pytest.raises(ShuttingDown):
        await service.runner.submit(QUESTION)
