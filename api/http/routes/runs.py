"""Background runs: start, inspect, list, follow and cancel."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import Response, StreamingResponse

from api.http.auth import CallerDep
from api.http.deps import REPLAYED_HEADER, IdempotencyHeader, LookupDep, OnDisconnectDep, RunnerDep, StoreDep
from api.http.errors import documented
from api.http.openapi import SSE_RESPONSE_DOC
from api.http.schemas import ReasonRequest, RunAccepted, RunPage, RunSummary, RunView
from api.http.streams import LAST_EVENT_ID_PATTERN, last_event_id, run_events_response
from api.runs.idempotency import idempotency_key
from api.storage.interface import TERMINAL

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, responses=documented(400, 401, 409, 413, 422, 429, 503)
)
async def start_run(
    body: ReasonRequest,
    runner: RunnerDep,
    lookup: LookupDep,
    caller: CallerDep,
    response: Response,
    idempotency: IdempotencyHeader = None,
) -> RunAccepted:
    """Start a run in the background; follow it with `GET /v1/runs/{run_id}/events`.

    With an `Idempotency-Key`, a retry gets the run the first request made, as it is now."""
    key = idempotency_key(caller, idempotency, "/v1/runs", body)
    submitted = await runner.submit(body, tenant=caller.tenant, idempotency=key)
    if not submitted.replayed:
        return RunAccepted(run_id=submitted.run_id, status="queued")
    response.headers[REPLAYED_HEADER] = "true"
    return RunAccepted(run_id=submitted.run_id, status=(await lookup.get(submitted.run_id)).status)


@router.get("", responses=documented(401, 422, 503))
async def list_runs(
    store: StoreDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[
        str | None, Query(max_length=64, description="next_before of the previous page")
    ] = None,
) -> RunPage:
    """Recent runs of the caller's key (of every key, for an admin key), newest first."""
    records = await store.recent(limit + 1, before, key_hash=None if caller.sees_all else caller.key_hash)
    page = records[:limit]
    return RunPage(
        data=[
            RunSummary(
                run_id=r.id,
                status=r.status,
                question=r.question,
                created_at=r.created_at,
                updated_at=r.updated_at,
                total_tokens=r.result["usage"]["total_tokens"] if r.result else None,
            )
            for r in page
        ],
        has_more=len(records) > limit,
        next_before=page[-1].id if len(records) > limit else None,
    )


@router.get("/{run_id}", responses=documented(401, 404, 422, 503))
async def get_run(run_id: str, lookup: LookupDep, caller: CallerDep) -> RunView:
    """The run's status and, once it has finished, its result."""
    r = await lookup.get(run_id, caller)
    return RunView(
        run_id=r.id,
        status=r.status,
        question=r.question,
        created_at=r.created_at,
        updated_at=r.updated_at,
        result=r.result,
    )


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        **documented(400, 401, 404, 422, 503),
        **SSE_RESPONSE_DOC,
        204: {"description": "The run has ended and the client has its last event: do not reconnect"},
    },
)
async def run_events(
    run_id: str,
    lookup: LookupDep,
    on_disconnect: OnDisconnectDep,
    caller: CallerDep,
    last_event: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="the id of the last event the client has (a browser's EventSource sends it "
            "when it reconnects); anything else is 400 invalid_last_event_id",
            json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN},
        ),
    ] = None,
) -> Response:
    """Replay the run's events from the start (or after `Last-Event-ID`), then follow it live.

    A finished run whose events the client already has answers 204, which tells a browser's
    `EventSource` to stop reconnecting.
    """
    after = last_event_id(last_event)
    record = await lookup.get(run_id, caller)
    if record.status in TERMINAL and await lookup.last_event_id(run_id) <= after:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return run_events_response(
        lookup,
        run_id,
        after=after,
        on_disconnect=on_disconnect,
    )


@router.post("/{run_id}/cancel", responses=documented(401, 404, 409, 413, 422, 503))
async def cancel_run(run_id: str, runner: RunnerDep, lookup: LookupDep, caller: CallerDep) -> RunAccepted:
    """Stop the run: no further model calls; it ends as `cancelled`. With replicas, the one
    that runs it stops it (within a second); the answer waits up to 5 s to show it ended."""
    await lookup.get(run_id, caller)
    return RunAccepted(run_id=run_id, status=await runner.cancel_anywhere(run_id))
