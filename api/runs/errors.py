"""The run service's refusals, and what a waiting caller learns when its run goes on elsewhere.

The service knows no HTTP: ``api.http.errors`` answers each with a status code, the CLI prints
it. ``code`` names the error for the client, ``param`` the request field at fault."""

import math
from typing import Literal


class RunServiceError(Exception):
    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class Refused(RunServiceError):
    """The request cannot be run as asked (a question too long, a budget too small)."""


class Conflict(RunServiceError):
    """The request clashes with a run's state, or reuses an Idempotency-Key for another request."""


class Busy(RunServiceError):
    """No room for the run now: retry after ``retry_after_s`` (whole seconds, at least 1)."""

    def __init__(self, message: str, *, code: str, retry_after_s: float) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class QuotaExceeded(Busy):
    """A daily or per-minute quota of the caller's API key is spent; ``code`` names it."""

    def __init__(self, code: str, message: str, retry_after_s: float) -> None:
        super().__init__(message, code=code, retry_after_s=retry_after_s)


class ShuttingDown(RunServiceError):
    """This process takes no new runs."""

    def __init__(self) -> None:
        super().__init__("the service is shutting down", code="shutting_down")


LeftBecause = Literal["suspended", "taken_over"]


class RunLeft(RunServiceError):
    """The run goes on in another process (this one shut down and left it to resume, or another
    one took it over): it can be fetched by its id there."""

    def __init__(self, run_id: str, because: LeftBecause) -> None:
        if because == "suspended":
            message = f"the service is shutting down; run {run_id} resumes when it is back"
        else:
            message = f"run {run_id} was taken over by another process"
        super().__init__(message, code=f"run_{because}")
        self.run_id = run_id
