"""Liveness and readiness."""

from fastapi import APIRouter

from api.http.deps import BackendDep, BrokerDep, RegistryDep, ServiceDep, StoreDep
from api.http.errors import ApiError, documented
from api.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model_exclude_none=True)
async def healthz() -> Health:
    """The process is up. Touches neither storage nor the model backend."""
    return Health()


@router.get("/readyz", responses=documented(503), response_model_exclude_none=True)
async def readyz(
    registry: RegistryDep, store: StoreDep, backend: BackendDep, broker: BrokerDep, service: ServiceDep
) -> Health:
    """Ready for runs: not shutting down, the run store answers and takes writes, the model
    backend answers. Redis lost (with replicas) is `degraded`, not unready: live events and
    cancels then go through the database, a little later. So is an MCP server that did not
    start: runs go on without its tools."""
    if not registry.accepting:
        raise ApiError(503, "the service is shutting down", type="server_error", code="shutting_down")
    if not await store.ping():
        raise ApiError(503, "the run store cannot write", type="server_error", code="storage_unavailable")
    if not await backend.ping():
        raise ApiError(
            503, "the model backend is not answering", type="server_error", code="upstream_unavailable"
        )
    if not await broker.ping():
        return Health(status="degraded", detail="Redis is unreachable: replicas poll the database")
    if service.mcp.failed:
        failed = "; ".join(f"{name} ({why})" for name, why in service.mcp.failed.items())
        return Health(status="degraded", detail=f"MCP servers that did not start: {failed}")
    return Health()
