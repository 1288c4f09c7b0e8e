"""The FastAPI application factory. The graph is compiled once, in the lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.backend import Backend, open_backend
from api.errors import install_error_handlers
from api.routes import health, reason
from api.runner import Runner
from api.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app. Pass ``backend`` to use ready models (tests); otherwise the lifespan
    opens the one the settings name, starting the embedded model if needed."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if backend is not None:
            app.state.runner = Runner(settings, backend)
            yield
            return
        async with open_backend(settings) as opened:
            log.info("model backend ready at %s", opened.base_url)
            app.state.runner = Runner(settings, opened)
            yield

    app = FastAPI(
        title="reasoner",
        summary="A reasoning-LLM service: planner, parallel workers, critic and synthesizer, "
        "with an exact token ledger.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(reason.router)
    return app
