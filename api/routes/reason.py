"""POST /v1/reason: ask a question and wait for the result, or stream the run as it happens."""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from api.auth import CallerDep
from api.deps import LookupDep, RunnerDep, SettingsDep
from api.errors import RUN_ERRORS, documented, raise_for_failure
from api.events import SSE_RESPONSE_DOC
from api.schemas import ReasonRequest
from api.streams import run_events_response
from graph import Result

router = APIRouter(prefix="/v1", tags=["reason"])


def wants_events(accept: str | None) -> bool:
    return accept is not None and "text/event-stream" in accept.lower()


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
    lookup: LookupDep,
    settings: SettingsDep,
    caller: CallerDep,
    accept: Annotated[str | None, Header()] = None,
) -> Result | StreamingResponse:
    """Run the planner, workers, critic and synthesizer; return the answer and the ledger.

    With `Accept: text/event-stream` the run is streamed as server-sent events instead.
    """
    run_id = await runner.submit(body, key_hash=caller)
    if wants_events(accept):
        return run_events_response(
            lookup, run_id, after=0, cancel_on_disconnect=settings.cancel_on_disconnect
        )
    result = await lookup.wait(run_id)
    raise_for_failure(result)
    return result
