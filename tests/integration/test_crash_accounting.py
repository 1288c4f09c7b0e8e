"""Calls cut by a crash are counted: a call's journal row carries its prompt, counted locally,
from the moment it goes out, and a streamed call's completion tokens every PROGRESS_EVERY; when
the run is taken up, those rows stay in its ledger as ``interrupted`` and ``estimated``, and its
usage counts them. What the backend billed and the run does not count is then only what no one
saw: the completion of a call that streamed nothing back, and the tail of one that streamed."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.storage.postgres import PostgresRunStore
from api.storage.sqlite import SQLiteRunStore
from graph.deltas import PROGRESS_EVERY
from graph.journal import IN_FLIGHT, INTERRUPTED
from graph.ledger import CallRecord
from graph.tokens import MESSAGE_OVERHEAD, estimate
from tests.stub_backend import Recorded, StubBackend
from tests.support.runs import BODY, calls_for, until, workers_received
from tests.support.served import Served, integrity
from tests.support.sse import frames

ANSWER_WORDS = 200
"""The synthesizer's answer: one token a word, for the stub and for cl100k alike."""


def row(prompt: int, completion: int, estimated: bool, error: str | None) -> CallRecord:
    return CallRecord(
        node="synthesizer",
        task_id=None,
        attempt=1,
        retry=0,
        model="m",
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        started_at="2026-01-01T00:00:00.000+00:00",
        finished_at="2026-01-01T00:00:00.000+00:00",
        latency_ms=0.0,
        error=error,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_call_left_in_flight_is_taken_up_with_its_last_count(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async def scenario() -> list[CallRecord]:
        store = (
            SQLiteRunStore(tmp_path / "reasoner.db")
            if kind == "sqlite"
            else PostgresRunStore(request.getfixturevalue("database"))
        )
        await store.open()
        await store.create("run_x", "Q?", {"question": "Q?"}, lease_s=60)
        store.record_call("run_x", 1, row(40, 0, True, IN_FLIGHT), None)
        store.record_call("run_x", 1, row(40, 64, True, IN_FLIGHT), None)  # it streamed further
        store.record_call("run_x", 2, row(0, 0, False, IN_FLIGHT), None)  # as an older version wrote it
        assert await store.flush(5)
        entries = await store.calls("run_x")
        await store.close()
        return [e.row for e in entries]

    first, older = asyncio.run(scenario())
    assert first == row(40, 64, True, INTERRUPTED)
    assert older == row(0, 0, True, INTERRUPTED), "its count is unknown: estimated"


def prompt_estimate(call: Recorded) -> int:
    """The service's local count of this call's prompt (graph.tokens.estimate_messages), with
    the tools it offered."""
    tools = estimate(json.dumps(call.body["tools"])) if "tools" in call.body else 0
    return tools + sum(estimate(str(m["content"])) + MESSAGE_OVERHEAD for m in call.body["messages"])


def kill_while_streaming(served: Served, run_id: str, words: int) -> float:
    """Follow the run and ``kill -9`` its process once its answer has streamed ``words`` words
    (after the seam); returns when the process was gone (on the stub's clock)."""
    seen = 0
    with (
        httpx.Client(base_url=served.url, timeout=30) as http,
        http.stream("GET", f"/v1/runs/{run_id}/events") as response,
    ):
        resumed = False
        for frame in frames(response):
            resumed = resumed or frame.event == "run.resumed"
            if resumed and frame.event == "answer.delta":
                seen += len(frame.data["text"].split())
                if seen >= words:
                    break
    served.kill()
    return time.perf_counter()


def test_calls_cut_by_kill_9_are_counted_up_to_what_no_one_saw(
    four_parts: StubBackend, tmp_path: Path
) -> None:
    """Life 1 is killed with 2 of its 4 workers held by the backend (which bills them when they
    end, a few seconds later), life 2 once 100 words of the answer have streamed, life 3 ends
    the run."""
    stub = four_parts
    data_dir = tmp_path / "data"
    stub.options.slow = {"Part 3": 3.0, "Part 4": 3.0}
    stub.options.synthesizer_reply = " ".join(["word"] * ANSWER_WORDS)
    stub.options.role_tokens_per_s = {"synthesizer": 40.0}

    first = Served(stub, data_dir)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        run_id = http.post("/v1/runs", json=BODY).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            names: list[str | None] = []
            for frame in frames(response):
                names.append(frame.event)
                if names.count("task.completed") == 2 and "plan" in names:
                    break
    until(lambda: len(workers_received(stub)) == 4, 10, "all four workers to be called")
    first.kill()
    stub.options.slow = {}

    second = Served(stub, data_dir)
    killed = kill_while_streaming(second, run_id, 100)
    assert integrity(data_dir) == "ok"

    stub.options.role_tokens_per_s = {}
    third = Served(stub, data_dir)
    try:
        with httpx.Client(base_url=third.url, timeout=30) as http:
            view: Any = until(
                lambda: (v := http.get(f"/v1/runs/{run_id}").json())["status"] == "completed" and v,
                20,
                "the run to complete",
            )
    finally:
        third.kill()
    until(lambda: calls_for(stub, "Part 3") == calls_for(stub, "Part 4") == 2, 10, "the cut workers billed")

    result = view["result"]
    cut_workers = [
        min(
            (c for c in stub.calls_of("worker") if part in c.body["messages"][-1]["content"]),
            key=lambda c: c.started,
        )
        for part in ("Part 3", "Part 4")
    ]
    cut_synthesizer = min(stub.calls_of("synthesizer"), key=lambda c: c.started)
    interrupted = [c for c in result["calls"] if c["error"] == INTERRUPTED]
    assert [(c["node"], c["task_id"]) for c in interrupted] == [
        ("worker", "t3"),
        ("worker", "t4"),
        ("synthesizer", None),
    ]
    assert all(c["estimated"] for c in interrupted)
    assert [c["prompt_tokens"] for c in interrupted] == [
        prompt_estimate(c) for c in (*cut_workers, cut_synthesizer)
    ], "each cut call's prompt, as counted when it went out"
    assert [c["completion_tokens"] for c in interrupted[:2]] == [0, 0], "nothing came back"
    sent = sum(at < killed for at, _ in cut_synthesizer.chunks)
    streamed = interrupted[2]["completion_tokens"]
    assert streamed % PROGRESS_EVERY == 0
    assert 100 - PROGRESS_EVERY < streamed <= sent, "the last running count before the kill"
    assert result["usage"]["estimated"] is True

    billed = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    counted = result["usage"]["total_tokens"]
    returned = [c for c in result["calls"] if c["error"] is None]
    assert counted == sum(c["prompt_tokens"] + c["completion_tokens"] for c in returned + interrupted)
    # The cut prompts are counted with cl100k, the stub bills words: that difference aside, the
    # gap is what no one saw, give or take the last running count's step.
    tokenizers = sum(c.prompt_tokens - prompt_estimate(c) for c in (*cut_workers, cut_synthesizer))
    unseen = sum(c.completion_tokens for c in cut_workers) + cut_synthesizer.completion_tokens - sent
    assert unseen <= billed - counted - tokenizers < unseen + PROGRESS_EVERY, (billed, counted, tokenizers)
