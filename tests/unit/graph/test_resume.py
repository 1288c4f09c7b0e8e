"""A run taken up again after its process died: LangGraph's checkpoint for the state between
nodes, the call journal within a node. Finished calls are not made again, the events are not
repeated, and the usage covers every attempt."""

import asyncio
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from graph import RunContext, TiktokenCounter, build_graph, execute
from graph.calibration import measure_messages
from graph.calls import call_text
from graph.events import EventData, EventName, replay_key
from graph.journal import IN_FLIGHT, Entry, Journal
from graph.ledger import CallRecord
from graph.result import Result
from tests.conftest import stub_models
from tests.stub_backend import StubBackend

PLAN = [{"id": f"t{i}", "question": f"Part {i} of the question?", "depends_on": []} for i in range(1, 5)]


class MemoryLog:
    """A CallLog that keeps the rows as a store would (the latest row per call)."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[CallRecord, str | None]] = {}

    def started(self, seq: int, row: CallRecord) -> None:
        self.rows[seq] = (row, None)

    def ended(self, seq: int, row: CallRecord, output: str | None) -> None:
        self.rows[seq] = (row, output)

    def entries(self) -> list[Entry]:
        return [Entry(seq, row, output) for seq, (row, output) in self.rows.items()]


async def attempt(
    stub: StubBackend,
    saver: InMemorySaver,
    ctx: RunContext,
    events: list[tuple[EventName, EventData]],
    *,
    resume: bool,
    stop_after_completed: int | None = None,
) -> Result | None:
    graph = build_graph(stub_models(stub), checkpointer=saver)
    enough = asyncio.Event()

    async def emit(name: EventName, data: EventData) -> None:
        events.append((name, data))
        names = [n for n, _ in events]
        # The plan's end too: workers start while it streams, so its call could be the one cut.
        done = stop_after_completed is not None and names.count("task.completed") >= stop_after_completed
        if done and "plan" in names:
            enough.set()

    run = asyncio.create_task(
        execute(
            graph,
            "Q?",
            ctx,
            run_id="run_resume",
            question_count=await TiktokenCounter().count("Q?"),
            emit=emit,
            resume=resume,
        )
    )
    if stop_after_completed is None:
        return await run
    await enough.wait()
    while sum(role == "worker" for role, _ in stub.received) < len(PLAN):  # all four are out
        await asyncio.sleep(0.01)
    run.cancel()  # the process "dies": the run's task goes away with its calls in flight
    await asyncio.wait({run})
    return None


def context(**kwargs: Any) -> RunContext:
    return RunContext(max_subtasks=4, max_revisions=0, max_attempts=1, **kwargs)


Events = list[tuple[EventName, EventData]]


async def crash_and_resume(stub: StubBackend) -> tuple[Events, Events, Result, MemoryLog, int]:
    """A run stopped with 2 of its 4 workers answered and the other 2 held, then resumed: the
    events of each attempt, the result, the journal and what the first attempt was billed."""
    stub.options.plan = PLAN
    stub.options.slow = {"Part 3": 60, "Part 4": 60}
    saver, log = InMemorySaver(), MemoryLog()
    before: Events = []
    await attempt(stub, saver, context(journal=Journal(log)), before, resume=False, stop_after_completed=2)
    first_billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    stub.options.slow = {}
    after: Events = []
    result = await attempt(stub, saver, context().resuming(log, log.entries()), after, resume=True)
    assert result is not None
    return before, after, result, log, first_billed


async def test_a_resumed_run_does_not_call_finished_workers_again(stub: StubBackend) -> None:
    _, _, result, log, first_billed = await crash_and_resume(stub)
    assert result["status"] == "completed", (result["subanswers"], result["error"], result["fallbacks"])
    workers = [str(c.body["messages"][-1]["content"]) for c in stub.calls_of("worker")]
    for part, calls in (("Part 1", 1), ("Part 2", 1), ("Part 3", 1), ("Part 4", 1)):
        assert sum(part in w for w in workers) == calls, part
    assert len(stub.calls_of("planner")) == 1, "the plan is replayed from the journal"
    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert billed > first_billed > 0
    assert result["usage"]["total_tokens"] == billed, "every attempt's calls, each counted once"
    assert len(result["calls"]) == len(log.entries())
    cut = [c for c in result["calls"] if c["error"] is not None]
    assert [(c["task_id"], c["prompt_tokens"] + c["completion_tokens"]) for c in cut] == [
        ("t3", 0),
        ("t4", 0),
    ], "the calls cut short by the crash cost nothing that was reported"


async def test_events_before_the_seam_are_recognised_as_repeats(stub: StubBackend) -> None:
    before, after, _, _, _ = await crash_and_resume(stub)
    seen = {replay_key(n, d) for n, d in before} - {None}
    fresh = [(n, d) for n, d in after if replay_key(n, d) not in seen]
    completed = sorted(str(d["task_id"]) for n, d in fresh if n == "task.completed")  # type: ignore[typeddict-item]
    assert completed == ["t3", "t4"]
    assert "plan.task" not in [n for n, _ in fresh], "the plan was out before the seam"
    assert [n for n, _ in fresh][-1] == "usage"


class HistoryLog(MemoryLog):
    """Also keeps every in-flight row as it was written."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[CallRecord] = []

    def started(self, seq: int, row: CallRecord) -> None:
        self.in_flight.append(row)
        super().started(seq, row)


async def test_a_call_in_flight_is_written_with_its_prompt_and_what_it_has_streamed(
    stub: StubBackend,
) -> None:
    """What a crash would leave of the call at any moment: its prompt as counted locally, and
    the completion tokens streamed up to the last multiple of PROGRESS_EVERY, marked estimated."""
    stub.options.answer_tokens = 100
    log = HistoryLog()
    ctx = context(journal=Journal(log))
    messages = [SystemMessage("You answer."), HumanMessage("What is the answer?")]
    _, (done,) = await call_text(
        stub_models(stub).synthesizer, messages, ctx, node="synthesizer", on_delta=lambda _: None
    )
    prompt = measure_messages(messages).counted
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in log.in_flight] == [
        (prompt, n) for n in (0, 32, 64, 96)
    ]
    assert all(r["estimated"] and r["error"] == IN_FLIGHT for r in log.in_flight)
    assert (done["completion_tokens"], done["estimated"], done["error"]) == (100, False, None)
    assert log.rows[1][0] == done, "the end overwrites the in-flight row"


async def test_a_call_not_streamed_is_written_once_in_flight(stub: StubBackend) -> None:
    log = HistoryLog()
    messages = [SystemMessage("You answer."), HumanMessage("What is part one?")]
    await call_text(stub_models(stub).worker, messages, context(journal=Journal(log)), node="worker")
    assert [(r["prompt_tokens"], r["completion_tokens"], r["estimated"]) for r in log.in_flight] == [
        (measure_messages(messages).counted, 0, True)
    ]
