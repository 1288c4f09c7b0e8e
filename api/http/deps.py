"""FastAPI dependencies, as Annotated aliases."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from api.backend.connect import Backend
from api.runs.lookup import RunLookup
from api.runs.registry import Registry
from api.runs.runner import Runner
from api.runs.service import RunService
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import RunStore
from api.telemetry.metrics import Metrics


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


ServiceDep = Annotated[RunService, Depends(get_service)]


async def get_runner(service: ServiceDep) -> Runner:
    return service.runner


async def get_lookup(service: ServiceDep) -> RunLookup:
    return service.lookup


async def get_registry(service: ServiceDep) -> Registry:
    return service.registry


async def get_store(service: ServiceDep) -> RunStore:
    return service.store


async def get_broker(service: ServiceDep) -> Broker:
    return service.broker


async def get_backend(service: ServiceDep) -> Backend:
    return service.backend


async def get_metrics(service: ServiceDep) -> Metrics:
    return service.metrics


async def get_on_disconnect(service: ServiceDep) -> Callable[[str], None] | None:
    """What a stream does to its run when its client goes away before the end: cancel it with
    CANCEL_ON_DISCONNECT, else nothing."""
    return service.registry.cancel_later if service.settings.cancel_on_disconnect else None


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
OnDisconnectDep = Annotated[Callable[[str], None] | None, Depends(get_on_disconnect)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
LookupDep = Annotated[RunLookup, Depends(get_lookup)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
"""This process's live runs, and whether it takes new ones."""
StoreDep = Annotated[RunStore, Depends(get_store)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
BackendDep = Annotated[Backend, Depends(get_backend)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""A client's key for a request that starts a run (``api.runs.idempotency``)."""
REPLAYED_HEADER = "Idempotent-Replayed"
"""Set (``true``) on a response that is a replay of an earlier request's run."""

IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per logical request (e.g. a UUID): a retry with the same key "
        "returns the same run for 24 h instead of starting another",
    ),
]
