"""EVENT_LOOP picks the loop of `reasoner serve` and of the CLI alike: uvloop unless asked for
the standard library's."""

import asyncio

import pytest
from fastapi import FastAPI

from api.cli import _run
from api.http.server import server_config
from api.settings import Settings


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(
    ("choice", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_cli_and_the_server_run_on_the_loop_event_loop_names(choice: str, module: str) -> None:
    settings = Settings(_env_file=None, event_loop=choice)  # type: ignore[call-arg]
    assert _run(settings, loop_module()).split(".")[0] == module
    factory = server_config(FastAPI(), settings).get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()
