"""Runs against the scripted backend, as the process-level tests drive them: a four-part plan
whose last two workers the stub can hold, and waiting, following and counting helpers."""

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from tests.stub_backend import StubBackend
from tests.support.sse import Frame, frames

T = TypeVar("T")

PLAN = [{"id": f"t{i}", "question": f"Part {i} of the question?", "depends_on": []} for i in range(1, 5)]
HELD = {"Part 3": 120.0, "Part 4": 120.0}
"""The stub holds these two workers' calls (far longer than any test waits)."""

BODY = {"question": "A question in four parts?", "max_subtasks": 4, "max_revisions": 0}


def until(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def workers_received(stub: StubBackend) -> list[str]:
    return [last for role, last in stub.received if role == "worker"]


def follow(url: str, run_id: str, last_event_id: int) -> Iterator[Frame]:
    with (
        httpx.Client(base_url=url, timeout=60) as http,
        http.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last_event_id)}) as r,
    ):
        yield from (f for f in frames(r) if not f.comment)


def calls_for(stub: StubBackend, part: str) -> int:
    return sum(part in str(c.body["messages"][-1]["content"]) for c in stub.calls_of("worker"))


def interrupted(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's calls cut by a crash: counted locally (``estimated``), never reported."""
    return [c for c in result["calls"] if c["error"] == "interrupted"]


def cut_tokens(result: dict[str, Any]) -> int:
    """What the run counts for its calls cut by a crash (their prompts, and what had streamed),
    on top of what the backend reported for the calls that returned."""
    return sum(c["prompt_tokens"] + c["completion_tokens"] for c in interrupted(result))
