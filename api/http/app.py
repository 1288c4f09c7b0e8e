"""The FastAPI application factory. The graph is compiled once, in the lifespan."""

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.routing import NoMatchFound

from api.backend.connect import Backend, open_backend
from api.backend.tools import connected_tools
from api.http.auth import Authenticated
from api.http.body_limit import BodySizeLimit
from api.http.errors import install_error_handlers
from api.http.mcp import http_caller, mcp_app
from api.http.mcp import mcp_server as server_for_mcp
from api.http.openapi import openapi_document
from api.http.routes import health, metrics, openai, page, reason, runs, usage
from api.http.routes.page import STATIC
from api.runs.service import run_service
from api.runs.tenants import check_cost_quotas, load_tenants
from api.settings import Settings, get_settings
from api.storage.factory import open_broker, open_store
from api.telemetry.logs import bare_url
from api.telemetry.otel import tracing

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the app. Pass ``backend`` to use ready models (tests; the app closes it on
    shutdown); otherwise the lifespan opens the one the settings name, starting the embedded
    model if needed."""
    settings = settings or get_settings()
    tenants = load_tenants(settings.keys, settings.api_keys_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.enter_context(tracing(settings))  # first in, last out: flushed after the runs end
            if backend is None:
                ready = await stack.enter_async_context(open_backend(settings, stop=app.state.startup_stop))
            else:
                ready = backend
                stack.push_async_callback(backend.aclose)  # the app owns the backend it was given
            where = {"base_url": bare_url(ready.base_url), "embedded": ready.embedded}
            log.info("model backend ready", extra=where)
            store = await open_store(settings)
            stack.push_async_callback(store.close)
            broker = open_broker(settings)
            mcp = await stack.enter_async_context(connected_tools(settings))
            service = run_service(settings, ready, store, broker, mcp)
            check_cost_quotas(tenants, service.prices, ready.models.names)
            await broker.start()
            stack.push_async_callback(broker.close)
            await service.runner.start()
            app.state.service = service
            await stack.enter_async_context(mcp_server.session_manager.run())
            if not tenants.enabled and not is_loopback(settings.host):
                log.warning(
                    "API_KEYS is not set and the service listens beyond loopback: anyone who can "
                    "reach it can spend your model backend's tokens",
                    extra={"host": settings.host},
                )
            yield
            await service.runner.shutdown(settings.shutdown_grace_s)

    app = FastAPI(
        title="reasoner",
        summary="A reasoning-LLM service: planner, parallel workers, critic and synthesizer, "
        "with an exact token ledger.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tenants = tenants
    # Set by a signal that arrives during startup: the embedded model's start is abandoned.
    app.state.startup_stop = asyncio.Event()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(page.router)
    app.include_router(metrics.router, dependencies=[] if settings.metrics_public else [Authenticated])
    for module in (reason, runs, openai, usage):
        app.include_router(module.router, dependencies=[Authenticated])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.origins:
        # Keys travel in the Authorization header, never in cookies: no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # MCP clients: reason and get_run over streamable HTTP, behind the same keys.
    mcp_server = server_for_mcp(lambda: app.state.service, http_caller(tenants))
    app.mount("/mcp", mcp_app(mcp_server, tenants, loopback=is_loopback(settings.host)))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    build_routes(app)
    return app


def build_routes(app: FastAPI) -> None:
    """Build every route's handler now. FastAPI builds an included router's routes at the first
    request that reaches them: this moves that (~25 ms) from the first request to start-up, and
    keeps two apps in one process (the tests' replicas) from building the shared models at once."""
    with suppress(NoMatchFound):
        app.url_path_for("\0")  # looked up in every route: no name matches
