"""One error shape for every endpoint: ``{"error": {message, type, param, code}}``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from api.http.schemas import ErrorBody, ErrorResponse
from api.runs.errors import Busy, Conflict, Refused, RunLeft, RunServiceError, ShuttingDown
from api.storage.interface import RunNotFound, StorageUnavailable
from graph import ErrorKind, Result

log = logging.getLogger(__name__)

UPSTREAM_STATUS: dict[ErrorKind, int] = {
    "upstream_timeout": 504,
    "deadline_exceeded": 504,
    "internal_error": 500,
    "crash_loop": 500,
}
"""HTTP status for a failed run, by cause; every other upstream cause is a 502."""


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request cannot be run, for a reason no schema can state; `code` names it: "
    "question_too_long (in tokens), budget_too_small (the message states the least budget this "
    "question needs), no_price (cost_budget_usd without prices), invalid_messages (the last "
    "message is not a non-empty one of the user's), unsupported_parameter, invalid_last_event_id, "
    "invalid_range (since after until, or more than 366 days), tool_not_offered (a tool the "
    "service does not offer)",
    401: "Missing or invalid API key",
    404: "Not found",
    409: "Conflict with the resource's state, or an Idempotency-Key used with another request",
    413: "Request body too large",
    422: "Invalid request body or parameters",
    500: "The run failed with an internal error",
    429: "Too many runs in progress, or a quota of the API key is spent (code; see Retry-After)",
    502: "The model backend failed",
    503: "Shutting down, not ready, or storage unavailable",
    504: "The model backend or the run's deadline timed out",
}

RUN_ERRORS = (400, 401, 409, 413, 422, 429, 500, 502, 503, 504)
"""What a route that starts a run can answer besides success."""


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all in the one error shape."""
    return {s: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=type, param=param, code=code)
        self.headers = headers


SERVICE_ERRORS: dict[type[RunServiceError], tuple[int, str]] = {
    Refused: (400, "invalid_request_error"),
    Conflict: (409, "invalid_request_error"),
    Busy: (429, "rate_limit_error"),
    RunLeft: (503, "server_error"),
    ShuttingDown: (503, "server_error"),
}
"""Status and error type of each of the run service's errors (``api.runs.errors``)."""


def api_error(exc: RunServiceError) -> ApiError:
    """The run service's error as this API answers it. A run that went on elsewhere is named by
    the route that fetches it."""
    status, kind = next(answer for cls, answer in SERVICE_ERRORS.items() if isinstance(exc, cls))
    message = f"{exc.message}: GET /v1/runs/{exc.run_id}" if isinstance(exc, RunLeft) else exc.message
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Busy) else None
    return ApiError(status, message, type=kind, code=exc.code, param=exc.param, headers=headers)


def run_suspended(run_id: str) -> ApiError:
    """What a client waiting on a run gets when the process shuts down and leaves the run to
    resume in the next one: the run goes on there, and can be fetched by its id."""
    return api_error(RunLeft(run_id, "suspended"))


def raise_for_failure(result: Result) -> None:
    """A failed run as an error response, with its cause in ``code``."""
    error = result["error"]
    if error is not None:
        raise ApiError(
            UPSTREAM_STATUS.get(error["kind"], 502),
            f"run {result['run_id']} failed in the {error['node'] or 'engine'}: {error['message']}",
            type="server_error" if error["kind"] in ("internal_error", "crash_loop") else "upstream_error",
            code=error["kind"],
        )


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=body).model_dump(), status_code=status, headers=headers)


def error_body_bytes(message: str, *, code: str, type: str = "invalid_request_error") -> bytes:
    body = ErrorResponse(error=ErrorBody(message=message, type=type, code=code))
    return body.model_dump_json().encode()


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    return (f"{param}: {message}" if param else message), param


def allowed_methods(app: FastAPI, path: str) -> str:
    """Every method of every route at ``path`` (Starlette's 405 names only the first route's)."""
    methods = {
        method
        for route in app.routes
        if isinstance(route, Route) and route.path_regex.fullmatch(path)
        for method in route.methods or ()
    }
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.body, exc.headers)

    @app.exception_handler(RunServiceError)
    async def _service_error(request: Request, exc: RunServiceError) -> JSONResponse:
        answer = api_error(exc)
        return error_response(answer.status, answer.body, answer.headers)

    @app.exception_handler(RunNotFound)
    async def _no_run(request: Request, exc: RunNotFound) -> JSONResponse:
        body = ErrorBody(
            message=f"no run with id {exc.args[0]!r}",
            type="invalid_request_error",
            param="run_id",
            code="run_not_found",
        )
        return error_response(404, body)

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.error("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        body = ErrorBody(
            message="the run store is unavailable; retry later",
            type="server_error",
            code="storage_unavailable",
        )
        return error_response(503, body, {"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        body = ErrorBody(message=message, type="invalid_request_error", param=param, code="invalid_body")
        return error_response(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            code, exc.detail = "invalid_body", "the body is not valid JSON in UTF-8"
        body = ErrorBody(message=str(exc.detail), type="invalid_request_error", code=code)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(app, request.scope["path"])}
        return error_response(exc.status_code, body, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = ErrorBody(message="internal server error", type="server_error", code="internal_error")
        return error_response(500, body)
