"""Errors a run can end with, and the classification of a failed model call by its upstream cause."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx
import openai

ErrorKind = Literal[
    "upstream_auth",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_rate_limited",
    "upstream_bad_request",
    "upstream_bad_response",
    "deadline_exceeded",
    "budget_exhausted",
    "internal_error",
    "crash_loop",
]


class ModelCallError(Exception):
    """A model call failed for good (after its retries); its attempts are in the run's ledger."""

    def __init__(
        self, kind: ErrorKind, message: str, node: str, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.node = node
        self.status = status
        """The backend's HTTP status, when it answered with an error."""
        self.code = code
        """The backend's error code, when it gave one."""


class Fenced(Exception):
    """This process may no longer act for the run (``RunContext.fence`` said so: it cannot be
    sure it still holds the run's lease). Nothing more is called; the run stops here and goes on
    wherever its lease now is."""


MAX_RETRY_AFTER_S = 60.0


class Failure(Exception):
    """One failed try, classified: its kind, a message safe to show, and whether to retry."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retryable: bool,
        retry_after: float | None,
        status: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code


class MalformedResponse(Exception):
    """The backend's response could not be read as a chat completion."""


READING_ERRORS = (openai.APIError, ValueError, LookupError, TypeError, AttributeError)
"""What the client libraries raise while reading a response they cannot make sense of."""

TRANSPORT_ERRORS = (openai.APIStatusError, openai.APIConnectionError, httpx.TransportError)
"""Failures to get a response at all (timeouts included), classified as they are."""


@contextmanager
def reading_response() -> Iterator[None]:
    """What the client raises while reading a response it cannot make sense of is the
    backend's MalformedResponse; failures to get a response at all stay what they are."""
    try:
        yield
    except TRANSPORT_ERRORS:
        raise
    except READING_ERRORS as exc:
        raise MalformedResponse(type(exc).__name__) from exc


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        return None


def classify(exc: BaseException) -> Failure:
    """Map an exception from the SDK or the transport to an error kind and a retry decision.

    Upstream text is never quoted in the message: it may echo anything, keys included.
    """
    if isinstance(exc, TimeoutError | openai.APITimeoutError | httpx.TimeoutException):
        return Failure("upstream_timeout", "the model backend timed out", True, None)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return Failure("upstream_unavailable", "could not connect to the model backend", True, None)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"the model backend answered HTTP {status}"
        if status in (401, 403):
            return Failure(
                "upstream_auth", f"{detail}: the backend rejected the API key", False, None, status
            )
        if status == 429:
            return Failure("upstream_rate_limited", detail, True, _retry_after(exc.response), status)
        if status in (408, 409) or status >= 500:
            return Failure("upstream_unavailable", detail, True, _retry_after(exc.response), status)
        code = exc.code if isinstance(exc.code, str) and exc.code.isidentifier() else None
        message = detail + (f" ({code})" if code else "")
        return Failure("upstream_bad_request", message, False, None, status, code)
    if isinstance(exc, MalformedResponse):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else str(exc)
        return Failure("upstream_bad_response", f"malformed backend response ({cause})", True, None)
    return Failure("internal_error", f"unexpected error ({type(exc).__name__})", False, None)
