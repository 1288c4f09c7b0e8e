"""The run service's errors as the HTTP API answers them: the status, the error shape and the
headers each had when the service raised them as HTTP errors itself."""

import pytest

from api.http.errors import api_error, run_suspended
from api.runs.errors import Busy, Conflict, QuotaExceeded, Refused, RunLeft, RunServiceError, ShuttingDown


def answer(exc: RunServiceError) -> tuple[int, dict[str, object], dict[str, str] | None]:
    error = api_error(exc)
    return error.status, error.body.model_dump(), error.headers


@pytest.mark.parametrize(
    ("exc", "status", "body", "headers"),
    [
        (
            Refused("too long", code="question_too_long", param="question"),
            400,
            {
                "message": "too long",
                "type": "invalid_request_error",
                "param": "question",
                "code": "question_too_long",
            },
            None,
        ),
        (
            Conflict("used with another request", code="idempotency_key_reused"),
            409,
            {
                "message": "used with another request",
                "type": "invalid_request_error",
                "param": None,
                "code": "idempotency_key_reused",
            },
            None,
        ),
        (
            Busy("too many runs in progress; retry later", code="too_many_runs", retry_after_s=5),
            429,
            {
                "message": "too many runs in progress; retry later",
                "type": "rate_limit_error",
                "param": None,
                "code": "too_many_runs",
            },
            {"Retry-After": "5"},
        ),
        (
            QuotaExceeded("tokens_per_day_exceeded", "spent", 3600.2),
            429,
            {
                "message": "spent",
                "type": "rate_limit_error",
                "param": None,
                "code": "tokens_per_day_exceeded",
            },
            {"Retry-After": "3601"},
        ),
        (
            QuotaExceeded("requests_per_minute_exceeded", "spent", 0.1),
            429,
            {
                "message": "spent",
                "type": "rate_limit_error",
                "param": None,
                "code": "requests_per_minute_exceeded",
            },
            {"Retry-After": "1"},
        ),
        (
            ShuttingDown(),
            503,
            {
                "message": "the service is shutting down",
                "type": "server_error",
                "param": None,
                "code": "shutting_down",
            },
            None,
        ),
        (
            RunLeft("run_1", "taken_over"),
            503,
            {
                "message": "run run_1 was taken over by another process: GET /v1/runs/run_1",
                "type": "server_error",
                "param": None,
                "code": "run_taken_over",
            },
            None,
        ),
    ],
)
def test_each_error_has_its_status_shape_and_headers(
    exc: RunServiceError, status: int, body: dict[str, object], headers: dict[str, str] | None
) -> None:
    assert answer(exc) == (status, body, headers)


def test_a_suspended_run_is_named_with_where_to_fetch_it() -> None:
    assert run_suspended("run_1").body.model_dump() == {
        "message": "the service is shutting down; run run_1 resumes when it is back: GET /v1/runs/run_1",
        "type": "server_error",
        "param": None,
        "code": "run_suspended",
    }
