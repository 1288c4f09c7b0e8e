"""What a backend may write that SQLite cannot store as text."""

import asyncio
from pathlib import Path

from api.sqlite_store import SQLiteRunStore
from api.store import Event
from graph.events import ANSWER_DELTA, AnswerDelta


def test_a_lone_surrogate_in_model_output_does_not_stop_the_writer(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        store = SQLiteRunStore(tmp_path / "reasoner.db")
        await store.open()
        await store.create("run_x", "Q?", {"question": "Q?"}, lease_s=60)
        store.append(Event(1, "run_x", ANSWER_DELTA, AnswerDelta(text="half a pair: \ud800")))
        store.append(Event(2, "run_x", ANSWER_DELTA, AnswerDelta(text="and after it")))
        assert await store.flush(5)
        events = await store.events("run_x")
        await store.close()
        return [e.data["text"] for e in events]  # type: ignore[typeddict-item]

    assert asyncio.run(scenario()) == ["half a pair: ?", "and after it"]
