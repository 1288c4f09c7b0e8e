"""POST /v1/reason: ask a question and wait for the result, or stream the run as it happens."""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse

from api.http.auth import CallerDep
from api.http.deps import REPLAYED_HEADER, IdempotencyHeader, LookupDep, OnDisconnectDep, RunnerDep
from api.http.errors import RUN_ERRORS, documented, raise_for_failure
from api.http.openapi import SSE_RESPONSE_DOC
from api.http.schemas import ReasonRequest
from api.http.streams import run_events_response
from api.runs.idempotency import idempotency_key
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
    on_disconnect: OnDisconnectDep,
    caller: CallerDep,
    response: Response,
    accept: Annotated[str | None, Header()] = None,
    idempotency: IdempotencyHeader = None,
) -> Result | StreamingResponse:
    """Run the planner, workers, critic and synthesizer; return the answer and the ledger.

    With `Accept: text/event-stream` the run is streamed as server-sent events instead. With an
    `Idempotency-Key`, a retry gets the result (or the stream) of the run the first request made.
    """
    key = idempotency_key(caller, idempotency, "/v1/reason", body)
    submitted = await runner.submit(body, tenant=caller.tenant, idempotency=key)
    run_id = submitted.run_id
    if wants_events(accept):
        stream = run_events_response(lookup, run_id, after=0, on_disconnect=on_disconnect)
        if submitted.replayed:
            stream.headers[REPLAYED_HEADER] = "true"
        return stream
    if submitted.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    result = await lookup.wait(run_id)
    raise_for_failure(result)
    return result
