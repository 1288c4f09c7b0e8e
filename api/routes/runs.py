"""Background runs: start, inspect, list, follow and cancel."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.deps import RunnerDep, SettingsDep
from api.errors import ApiError, documented
from api.events import SSE_RESPONSE_DOC
from api.schemas import ReasonRequest
from api.store import Status
from api.streams import last_event_id, run_events_response
from graph import Result

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class RunAccepted(BaseModel):
    run_id: str
    status: Status


class RunView(BaseModel):
    run_id: str
    status: Status
    question: str
    created_at: str
    updated_at: str
    result: Result | None = None


class RunSummary(BaseModel):
    run_id: str
    status: Status
    question: str
    created_at: str
    updated_at: str
    total_tokens: int | None = None


class RunPage(BaseModel):
    data: list[RunSummary]
    has_more: bool
    next_before: str | None = None


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=documented(400, 401, 413, 422, 429, 503))
async def start_run(body: ReasonRequest, runner: RunnerDep) -> RunAccepted:
    """Start a run in the background; follow it with `GET /v1/runs/{run_id}/events`."""
    run_id = await runner.submit(body)
    return RunAccepted(run_id=run_id, status=runner.status(run_id))


@router.get("", responses=documented(401, 422))
async def list_runs(
    runner: RunnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[
        str | None, Query(max_length=64, description="next_before of the previous page")
    ] = None,
) -> RunPage:
    """Recent runs, newest first."""
    records = runner.store.recent(limit + 1, before)
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


@router.get("/{run_id}", responses=documented(401, 404, 422))
async def get_run(run_id: str, runner: RunnerDep) -> RunView:
    """The run's status and, once it has finished, its result."""
    r = runner.record(run_id)
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
    responses={**documented(400, 401, 404, 422), **SSE_RESPONSE_DOC},
)
async def run_events(
    run_id: str,
    runner: RunnerDep,
    settings: SettingsDep,
    last_event: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Replay the run's events from the start (or after `Last-Event-ID`), then follow it live."""
    runner.record(run_id)
    return run_events_response(
        runner,
        run_id,
        after=last_event_id(last_event),
        cancel_on_disconnect=settings.cancel_on_disconnect,
    )


@router.post("/{run_id}/cancel", responses=documented(401, 404, 409, 413, 422))
async def cancel_run(run_id: str, runner: RunnerDep) -> RunAccepted:
    """Stop the run: no further model calls; it ends as `cancelled`."""
    stopped = await runner.cancel(run_id)
    current = runner.status(run_id)
    if not stopped:
        raise ApiError(409, f"run {run_id} has already finished ({current})", code="run_finished")
    return RunAccepted(run_id=run_id, status=current)
