"""What a backend may write that a store cannot keep as text (a lone surrogate, a NUL), in
events and in the call journal: replaced, and the writer goes on; on SQLite and on Postgres."""

import asyncio
from pathlib import Path

import pytest

from api.storage.interface import Event
from api.storage.postgres import PostgresRunStore
from api.storage.sqlite import SQLiteRunStore
from graph.events import ANSWER_DELTA, AnswerDelta
from graph.ledger import CallRecord


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_text_a_store_cannot_keep_does_not_stop_the_writer(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async def scenario() -> tuple[list[str], str | None]:
        store = (
            SQLiteRunStore(tmp_path / "reasoner.db")
            if kind == "sqlite"
            else PostgresRunStore(request.getfixturevalue("database"))
        )
        await store.open()
        await store.create("run_x", "Q?", {"question": "Q?"}, lease_s=60)
        store.append(Event(1, "run_x", ANSWER_DELTA, AnswerDelta(text="half a pair: \ud800")))
        store.append(Event(2, "run_x", ANSWER_DELTA, AnswerDelta(text="a NUL: \x00")))
        store.record_call("run_x", 1, CallRecord(node="worker", error=None), "said \ud800 and \x00")  # type: ignore[typeddict-item]
        store.append(Event(3, "run_x", ANSWER_DELTA, AnswerDelta(text="and after them")))
        assert await store.flush(5)
        events = await store.events("run_x")
        calls = await store.calls("run_x")
        await store.close()
        return [e.data["text"] for e in events], calls[0].output  # type: ignore[typeddict-item]

    texts, output = asyncio.run(scenario())
    assert texts == ["half a pair: ?", "a NUL: \x00", "and after them"], "JSON escapes the NUL"
    kept = "said ? and \x00" if kind == "sqlite" else "said ? and \ufffd"  # Postgres text has no NUL
    assert output == kept
