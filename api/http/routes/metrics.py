"""Prometheus metrics. With API_KEYS set, a key is needed, unless METRICS_PUBLIC."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.http.deps import LookupDep, MetricsDep, RegistryDep, StoreDep
from api.http.errors import documented

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={**documented(401, 503), 200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
async def metrics(
    recorded: MetricsDep, registry: RegistryDep, store: StoreDep, lookup: LookupDep
) -> Response:
    """Runs, model calls, tokens and cost by node and model, latencies, in the Prometheus text
    format."""
    statuses = [live.status for live in registry.live.values()]
    recorded.active.set(statuses.count("running"))
    recorded.queued.set(await store.queued() if store.shared else statuses.count("queued"))
    recorded.streams.set(lookup.followers)
    return Response(recorded.render(), media_type=CONTENT_TYPE_LATEST)
