"""A live run's followers: they end with the run, whatever id they start from."""

import asyncio

from api.runs.live import LiveRun
from graph.events import RUN_CANCELLED, RunEnded
from tests.conftest import empty_result


async def test_a_follower_ahead_of_the_log_ends_with_the_run() -> None:
    """A client can hold an id the log never reaches (a stale Last-Event-ID): it must not wait
    for it past the run's end."""
    live = LiveRun("run_x")
    follower = asyncio.create_task(anext(aiter(live.follow(after=5, heartbeat_s=60)), "ended"))
    result = empty_result("run_x")
    event = live.append(RUN_CANCELLED, RunEnded(run_id="run_x", result=result, error=None))
    live.stored_up_to(event.id)
    live.end("cancelled", result)
    assert await asyncio.wait_for(follower, 5) == "ended"
