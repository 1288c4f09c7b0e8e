"""The shared statements of ``api.storage.sql``, rendered in each dialect: one parameter for
every placeholder, whatever the clock and list pieces add."""

from typing import Any

import pytest

from api.storage.batch_writer import Statement
from api.storage.interface import Event, IdempotencyKey
from api.storage.leases import LocalLeases
from api.storage.postgres import POSTGRES
from api.storage.sql import Dialect, SQLRunStore
from api.storage.sqlite import SQLITE
from graph.events import ANSWER_DELTA, AnswerDelta
from graph.journal import IN_FLIGHT
from graph.ledger import CallRecord
from tests.conftest import empty_result


class Recorder:
    """Stands in for the writer, the checkpointer and the connection: keeps what it is given."""

    healthy = True

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def enqueue(self, statements: list[Statement], **_: Any) -> None:
        self.statements += statements

    async def write(self, statements: list[Statement]) -> None:
        self.statements += statements

    async def adelete_thread(self, thread_id: str) -> None:
        pass


def store_in(dialect: Dialect) -> tuple[SQLRunStore, Recorder]:
    recorder = Recorder()

    class Recorded(SQLRunStore):
        owner = "me"
        checkpointer = recorder  # type: ignore[assignment]
        checkpoint_errors = (OSError,)

        async def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
            recorder.statements.append((sql, params))
            return [{"id": "run_a"}, {"id": "run_b"}]

    Recorded.dialect = dialect
    store = Recorded()
    store._writes = recorder  # type: ignore[assignment]
    store._leases = LocalLeases()
    return store, recorder


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
async def test_every_placeholder_has_its_parameter(dialect: Dialect) -> None:
    store, recorder = store_in(dialect)
    event = Event(1, "run_a", ANSWER_DELTA, AnswerDelta(text="x"))
    store.append(event)
    store.set_status("run_a", "running")
    store.record_call("run_a", 1, CallRecord(error=IN_FLIGHT), "out")  # type: ignore[typeddict-item]
    await store.release(["run_a", "run_b"])
    await store.finish("run_a", "cancelled", empty_result("run_a"), event)
    await store.delete_before("2020-01-01T00:00:00+00:00")
    key = IdempotencyKey("scope", "fingerprint")
    recorder.statements += [store._renewal(30), store._earlier(key), *store._remember(key, "run_a")]
    assert len(recorder.statements) == 15
    for sql, params in recorder.statements:
        assert "{" not in sql, sql
        assert sql.count(dialect.mark) == len(params), (sql, params)
        other = "%s" if dialect.mark == "?" else "?"
        assert other not in sql, sql
