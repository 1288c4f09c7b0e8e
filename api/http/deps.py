"""FastAPI dependencies, as Annotated aliases."""

from typing import Annotated

from fastapi import Depends, Request

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
