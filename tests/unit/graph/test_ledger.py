"""The usage summary: which rows count as input, output and reasoning, whatever the ledger."""

import random

import pytest

from graph.ledger import NODES, CallRecord, Price, by_node, summarize


def row(
    node: str,
    prompt: int,
    completion: int,
    *,
    error: str | None = None,
    estimated: bool = False,
    model: str = "m",
) -> CallRecord:
    return CallRecord(
        node=node,  # type: ignore[typeddict-item]
        task_id=None,
        attempt=1,
        retry=0,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        latency_ms=1000.0,
        error=error,
    )


def test_random_ledgers_split_by_what_each_row_is() -> None:
    rng = random.Random(7)
    for _ in range(300):
        calls = [
            row(
                rng.choice(NODES),
                rng.randint(0, 500),
                rng.randint(0, 500),
                error=rng.choice([None, None, "upstream_timeout"]),
            )
            for _ in range(rng.randint(0, 12))
        ]
        question = rng.randint(0, 300)
        usage = summarize(calls, question, question_exact=False)
        nodes = by_node(calls)
        answer = sum(c["completion_tokens"] for c in calls if c["node"] == "synthesizer" and not c["error"])
        # output is only what successful synthesizer calls completed, whatever else the rows hold
        assert usage["output_tokens"] == answer
        # the total and the per-node table are built from the same rows, failed ones included
        assert usage["total_tokens"] == sum(n["total_tokens"] for n in nodes.values())
        assert sum(n["calls"] for n in nodes.values()) == len(calls)
        # input is the question's count, but never more than was billed beyond the answer
        assert usage["input_tokens"] == min(question, usage["total_tokens"] - answer)
        assert usage["reasoning_tokens"] >= 0


def test_split_of_a_typical_run() -> None:
    calls = [
        row("planner", 100, 20),
        row("worker", 80, 50),
        row("critic", 150, 30),
        row("synthesizer", 200, 60),
    ]
    usage = summarize(calls, 12, question_exact=True)
    assert usage == {
        "input_tokens": 12,
        "output_tokens": 60,
        "reasoning_tokens": 690 - 12 - 60,
        "total_tokens": 690,
        "estimated": False,
        "input_tokens_exact": True,
        "cost_usd": None,
    }


def test_failed_synthesizer_attempts_are_reasoning_not_output() -> None:
    calls = [row("synthesizer", 200, 0, error="timeout"), row("synthesizer", 200, 60)]
    usage = summarize(calls, 10, question_exact=True)
    assert usage["output_tokens"] == 60


def test_estimated_if_any_call_was() -> None:
    assert summarize([row("worker", 1, 1, estimated=True), row("planner", 1, 1)], 1, True)["estimated"]


def test_by_node_counts_every_kind() -> None:
    rows = by_node([row("worker", 10, 5), row("worker", 1, 1)])
    assert set(rows) == set(NODES)
    assert rows["worker"] == {
        "calls": 2,
        "prompt_tokens": 11,
        "completion_tokens": 6,
        "total_tokens": 17,
        "cost_usd": None,
    }
    assert rows["critic"]["calls"] == 0


def test_cost_is_tokens_times_prices_per_node_and_in_all() -> None:
    prices = {"small": Price(input=0.5, output=2.0), "big": Price(input=3.0, output=15.0, cached_input=0.3)}
    calls = [
        row("planner", 1000, 200, model="big"),
        row("worker", 800, 500, model="small"),
        row("worker", 700, 0, model="small", error="upstream_timeout"),  # billed what was reported
        row("synthesizer", 2000, 600, model="big"),
    ]
    nodes = by_node(calls, prices)
    assert nodes["planner"]["cost_usd"] == (1000 * 3.0 + 200 * 15.0) / 1e6
    assert nodes["worker"]["cost_usd"] == (1500 * 0.5 + 500 * 2.0) / 1e6
    assert nodes["critic"]["cost_usd"] == 0.0, "no calls, no cost"
    assert nodes["synthesizer"]["cost_usd"] == (2000 * 3.0 + 600 * 15.0) / 1e6
    usage = summarize(calls, 10, True, prices)
    assert usage["cost_usd"] == pytest.approx(22_750 / 1e6), "cached_input is not applied (no cached rows)"


def test_a_model_without_a_price_has_no_cost() -> None:
    calls = [row("planner", 10, 10, model="priced"), row("worker", 10, 10, model="unknown")]
    nodes = by_node(calls, {"priced": Price(1.0, 1.0)})
    assert nodes["planner"]["cost_usd"] == 20 / 1e6
    assert nodes["worker"]["cost_usd"] is None
    assert summarize(calls, 1, True, {"priced": Price(1.0, 1.0)})["cost_usd"] is None
