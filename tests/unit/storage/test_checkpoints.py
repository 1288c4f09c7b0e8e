"""The best-effort checkpointer holds a run's writes while asked to, and writes them only if the
run is to be resumed: a finished run never writes the checkpoint it would delete at once."""

import asyncio

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from api.storage.checkpoints import BestEffortSaver


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


async def put(saver: BestEffortSaver, thread_id: str) -> RunnableConfig:
    written = await saver.aput(config(thread_id), empty_checkpoint(), {"step": 1}, {})
    await saver.aput_writes(written, [("answer", 42)], "task-1")
    return written


def test_held_writes_are_dropped_for_a_finished_run_and_written_for_a_resumable_one() -> None:
    async def scenario() -> None:
        memory = InMemorySaver()
        saver = BestEffortSaver(memory, (OSError,))
        for thread_id in ("finished", "suspended"):
            saver.hold(thread_id, fresh=True)
            written = await put(saver, thread_id)
            assert written["configurable"]["thread_id"] == thread_id
            assert await memory.aget_tuple(config(thread_id)) is None  # held, not written
        await saver.release("finished", keep=False)
        await saver.release("suspended", keep=True)
        assert await memory.aget_tuple(config("finished")) is None
        kept = await memory.aget_tuple(config("suspended"))
        assert kept is not None
        assert [(w[1], w[2]) for w in kept.pending_writes or []] == [("answer", 42)]
        await put(saver, "finished")  # no longer held: written at once
        assert await memory.aget_tuple(config("finished")) is not None

    asyncio.run(scenario())


class Counting(InMemorySaver):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[str] = []
        self.read: list[str] = []

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self.read.append(config["configurable"]["thread_id"])
        return await super().aget_tuple(config)

    async def adelete_thread(self, thread_id: str) -> None:
        self.deleted.append(thread_id)
        await super().adelete_thread(thread_id)


def test_only_a_thread_that_may_have_something_stored_is_read_or_deleted() -> None:
    """Deleting takes the database's write lock, reading a trip to its thread: a fresh run that
    stored nothing skips both."""

    async def scenario() -> None:
        store = Counting()
        saver = BestEffortSaver(store, (OSError,))
        saver.hold("fresh", fresh=True)
        saver.hold("taken-up", fresh=False)  # an earlier process may have stored checkpoints
        for thread_id in ("fresh", "taken-up"):
            assert await saver.aget_tuple(config(thread_id)) is None
            await put(saver, thread_id)
            await saver.release(thread_id, keep=False)
            await saver.adelete_thread(thread_id)
        assert (store.read, store.deleted) == (["taken-up"], ["taken-up"])

    asyncio.run(scenario())
