"""Tools through the real app: a chain computed with the calculator, its events on the stream
and its rows in the result; a request narrowing the tools, or asking for one not offered; a
backend that rejects tools."""

import httpx

from tests.stub_backend import StubBackend
from tests.support.sse import frames

CHAIN = [
    {"id": "t1", "question": "calculate: 17 * 3", "depends_on": []},
    {"id": "t2", "question": "calculate: {t1} + 9", "depends_on": ["t1"]},
    {"id": "t3", "question": "calculate: {t2} / 4", "depends_on": ["t2"]},
]
SMALL = {"max_subtasks": 3, "max_revisions": 0}


def test_a_chain_computed_with_the_calculator_streams_its_tool_calls(
    client: httpx.Client, stub: StubBackend
) -> None:
    stub.options.plan = CHAIN
    with client.stream(
        "POST", "/v1/reason", json={"question": "What is (17 * 3 + 9) / 4?", **SMALL},
        headers={"Accept": "text/event-stream"},
    ) as stream:  # fmt: skip
        events = [(f.event, f.data) for f in frames(stream) if not f.comment]
    results = [d for name, d in events if name == "tool.result"]
    assert [(r["task_id"], r["name"], r["result"]) for r in results] == [
        ("t1", "calculator", "51"),
        ("t2", "calculator", "60"),
        ("t3", "calculator", "15"),
    ]
    called = [name for name, _ in events if name.startswith("tool.")]
    assert called == ["tool.called", "tool.result"] * 3, "each result follows its call"
    (result,) = [d["result"] for name, d in events if name == "run.completed"]
    assert [a["answer"] for a in result["subanswers"]] == [f"The result is {n}." for n in (51, 60, 15)]
    workers = [c for c in result["calls"] if c["node"] == "worker"]
    assert [(c["task_id"], c["step"], c.get("tool_calls")) for c in workers] == [
        ("t1", 0, ["calculator"]),
        ("t1", 1, None),
        ("t2", 0, ["calculator"]),
        ("t2", 1, None),
        ("t3", 0, ["calculator"]),
        ("t3", 1, None),
    ]
    assert result["usage"]["total_tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)


def test_a_request_narrows_the_tools_and_cannot_widen_them(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.plan = CHAIN[:1]
    none = client.post("/v1/reason", json={"question": "What is 17 * 3?", "tools": [], **SMALL})
    assert none.status_code == 200, none.text
    assert all("tools" not in c.body for c in stub.calls_of("worker"))
    refused = client.post("/v1/runs", json={"question": "Q?", "tools": ["calculator", "web_search"]})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("tool_not_offered", "tools")
    assert "'web_search'" in error["message"] and "calculator" in error["message"]


def test_a_backend_without_tool_calling_answers_without_tools(
    client: httpx.Client, stub: StubBackend
) -> None:
    stub.options.plan = CHAIN[:1]
    stub.options.reject_tools = True
    result = client.post("/v1/reason", json={"question": "What is 17 * 3?", **SMALL}).json()
    assert result["status"] == "completed"
    assert [f["kind"] for f in result["fallbacks"]] == ["no_tools"]
    assert [c["error"] is None for c in result["calls"] if c["node"] == "worker"] == [False, True]


def test_tool_calls_are_counted_by_tool_and_outcome(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.plan = [
        {"id": "t1", "question": "calculate: 6 * 7", "depends_on": []},
        {"id": "t2", "question": "calculate: 1 / 0", "depends_on": []},
    ]
    assert client.post("/v1/reason", json={"question": "Q?", **SMALL}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'reasoner_tool_calls_total{outcome="ok",tool="calculator"} 1.0' in metrics
    assert 'reasoner_tool_calls_total{outcome="error",tool="calculator"} 1.0' in metrics
    assert 'reasoner_tool_call_duration_seconds_count{tool="calculator"} 2.0' in metrics
