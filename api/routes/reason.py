"""POST /v1/reason: ask a question and wait for the result, or stream the run as it happens."""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from api.deps import RunnerDep, SettingsDep
from api.errors import RUN_ERRORS, UPSTREAM_STATUS, ApiError, documented
from api.events import SSE_RESPONSE_DOC
from api.schemas import ReasonRequest
from api.streams import run_events_response
from graph import Result

router = APIRouter(prefix="/v1", tags=["reason"])


def wants_events(accept: str | None) -> bool:
    return accept is not None and "text/event-stream" in accept.lower()


def raise_for_failure(result: Result) -> None:
    error = result["error"]
    if error is not None:
        raise ApiError(
            UPSTREAM_STATUS.get(error["kind"], 502),
            f"run {result['run_id']} failed in the {error['node'] or 'engine'}: {error['message']}",
            type="upstream_error",
            code=error["kind"],
        )


@router.post(
    "/reason",
    response_model=Result,
    responses={
        **documented(*RUN_ERRORS),
        200: {
            **SSE_RESPONSE_DOC[200],
            "description": "The result, or with `Accept: text/event-stream` the run's events",
        },
    },
)
async def reason(
    body: ReasonRequest,
    runner: RunnerDep,
    settings: SettingsDep,
    accept: Annotated[str | None, Header()] = None,
) -> Result | StreamingResponse:
    """Run the planner, workers, critic and synthesizer; return the answer and the ledger.

    With `Accept: text/event-stream` the run is streamed as server-sent events instead.
    """
    run_id = await runner.submit(body)
    if wants_events(accept):
        return run_events_response(
            runner, run_id, after=0, cancel_on_disconnect=settings.cancel_on_disconnect
        )
    result = await runner.wait(run_id)
    raise_for_failure(result)
    return result
