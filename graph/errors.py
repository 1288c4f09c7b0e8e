"""Errors a run can end with, classified by their upstream cause."""

from typing import Literal

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
