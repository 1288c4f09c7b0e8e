"""This process's runs: the slots they hold, which LiveRun is the run's, and how one is stopped."""

import asyncio

from api.runs.live import LiveRun
from api.runs.registry import Registry


def test_slots_are_held_and_released() -> None:
    registry = Registry(max_active=2)
    registry.hold()
    registry.hold()
    assert registry.active == 2 and registry.free == 0
    registry.release()
    assert registry.active == 1 and registry.free == 1


async def test_forgetting_an_older_live_run_keeps_the_newer_one_and_frees_a_slot() -> None:
    registry = Registry(max_active=1)
    freed: list[bool] = []
    registry.on_free = lambda: freed.append(True)
    older, newer = LiveRun("run_a"), LiveRun("run_a")
    registry.add(older)
    registry.add(newer)
    registry.forget(older)
    assert registry.get("run_a") is newer and freed == [True]
    registry.forget(newer)
    assert registry.get("run_a") is None and freed == [True, True]


async def test_a_cancel_stops_the_run_once_with_its_reason() -> None:
    registry = Registry(max_active=1)
    live = LiveRun("run_a")
    live.task = asyncio.create_task(asyncio.sleep(60))
    registry.add(live)
    assert not await registry.cancel("run_b"), "not live here"
    assert await registry.cancel("run_a", "interrupted")
    assert live.stop_reason == "interrupted" and live.task.cancelled()
    assert not await registry.cancel("run_a"), "its task is done"


async def test_a_cancel_from_afar_reaches_only_runs_that_are_here() -> None:
    registry = Registry(max_active=1)
    live = LiveRun("run_a")
    live.task = asyncio.create_task(asyncio.sleep(60))
    registry.add(live)
    registry.cancel_if_here("run_b")
    registry.cancel_if_here("run_a")
    await registry.settle(timeout_s=5)
    assert live.stop_reason == "cancelled" and live.task.cancelled()
