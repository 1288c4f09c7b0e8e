"""FastAPI dependencies, as Annotated aliases."""

from typing import Annotated

from fastapi import Depends, Header, Request

from api.runs.lookup import RunLookup
from api.runs.runner import Runner
from api.settings import Settings


def get_runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


def get_lookup(request: Request) -> RunLookup:
    lookup: RunLookup = request.app.state.lookup
    return lookup


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RunnerDep = Annotated[Runner, Depends(get_runner)]
LookupDep = Annotated[RunLookup, Depends(get_lookup)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

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
