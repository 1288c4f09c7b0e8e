"""POST /v1/reason: ask a question, wait for the answer and its token breakdown."""

from fastapi import APIRouter

from api.deps import RunnerDep
from api.errors import UPSTREAM_STATUS, ApiError
from api.schemas import ErrorResponse, ReasonRequest
from graph import Result

router = APIRouter(prefix="/v1", tags=["reason"])

ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorResponse, "description": "Invalid request"},
    502: {"model": ErrorResponse, "description": "The model backend failed"},
    504: {"model": ErrorResponse, "description": "The model backend timed out"},
}


@router.post("/reason", responses=ERRORS)
async def reason(body: ReasonRequest, runner: RunnerDep) -> Result:
    """Run the planner, workers, critic and synthesizer; return the answer and the ledger."""
    result = await runner.run(body)
    error = result["error"]
    if error is not None:
        raise ApiError(
            UPSTREAM_STATUS.get(error["kind"], 502),
            f"run {result['run_id']} failed in the {error['node'] or 'engine'}: {error['message']}",
            type="upstream_error",
            code=error["kind"],
        )
    return result
