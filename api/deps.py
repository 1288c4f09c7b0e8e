"""FastAPI dependencies, as Annotated aliases."""

from typing import Annotated

from fastapi import Depends, Request

from api.runner import Runner
from api.settings import Settings


def get_runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RunnerDep = Annotated[Runner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
