"""Server-sent events: sent when each step happens, framed safely, resumable."""

import json
import time

import httpx
import pytest
from pydantic import TypeAdapter

from api.http.sse import RECONNECT_MS, StreamEvent
from graph.events import EVENT_DATA
from tests.stub_backend import StubBackend
from tests.support.sse import Frame, frames

SSE = {"Accept": "text/event-stream"}


def stream_reason(client: httpx.Client, body: dict[str, object]) -> list[Frame]:
    with client.stream("POST", "/v1/reason", json=body, headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return [f for f in frames(response) if not f.comment]


def test_events_arrive_as_each_step_happens(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.latency_s = 0.3
    stub.options.subtasks = 2
    got = stream_reason(client, {"question": "Why?", "max_revisions": 1})
    names = [f.event for f in got]
    assert names[:3] == ["run.started", "stage", "plan.task"]
    assert names.index("plan") < names.index("critique")
    assert [f.data["stage"] for f in got if f.event == "stage"] == [
        "planning",
        "answering",
        "reviewing",
        "writing",
    ]
    assert names[-2:] == ["usage", "run.completed"]
    assert names.count("task.started") == 2 and names.count("task.completed") == 2
    assert names.index("critique") > max(i for i, n in enumerate(names) if n == "task.completed")
    assert "answer.delta" in names
    assert [f.id for f in got] == list(range(1, len(got) + 1))
    plan_at = next(f for f in got if f.event == "plan").at
    done_at = got[-1].at
    assert done_at - plan_at > 0.6, "the plan arrived while workers, critic and synthesizer still ran"
    planned_at = next(f for f in got if f.event == "plan.task").at
    first_task = next(f for f in got if f.event == "task.completed")
    assert first_task.at - planned_at > 0.2, "a task's answer came a worker call after it was planned"


def test_every_event_matches_its_typed_model(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.revise_first_round = True
    got = stream_reason(client, {"question": "Why?"})
    assert {f.event for f in got} >= {"stage", "critique", "task.completed", "run.completed"}
    for frame in got:
        assert frame.event in EVENT_DATA
        TypeAdapter(EVENT_DATA[frame.event]).validate_python(frame.data, strict=True)
        StreamEvent.model_validate({"id": frame.id, "event": frame.event, "data": frame.data})


def test_text_with_newlines_and_data_prefixes_cannot_break_framing(
    client: httpx.Client, stub: StubBackend
) -> None:
    nasty = 'line one\n\ndata: {"fake": true}\nevent: run.completed\r\nid: 999\n'
    stub.options.worker_reply = nasty
    got = stream_reason(client, {"question": "Why?", "max_revisions": 0})
    completed = [f for f in got if f.event == "task.completed"]
    assert completed and all(f.data["answer"] == nasty.strip() for f in completed)
    assert [f.event for f in got].count("run.completed") == 1
    assert max(f.id or 0 for f in got) == len(got)


def test_runs_api_lifecycle(client: httpx.Client, stub: StubBackend) -> None:
    response = client.post("/v1/runs", json={"question": "What is up?"})
    assert response.status_code == 202
    accepted = response.json()
    run_id = accepted["run_id"]
    assert accepted["status"] in ("queued", "running")
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        all_frames = [f for f in frames(events) if not f.comment]
    assert all_frames[-1].event == "run.completed"
    view = client.get(f"/v1/runs/{run_id}").json()
    assert view["status"] == "completed"
    assert view["result"]["answer"] == "The final answer is 42."
    listed = client.get("/v1/runs").json()
    assert listed["data"][0]["run_id"] == run_id
    assert listed["data"][0]["total_tokens"] == view["result"]["usage"]["total_tokens"]
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "3"}) as events:
        resumed = [f for f in frames(events) if not f.comment]
    assert [f.id for f in resumed] == [f.id for f in all_frames[3:]]
    assert [f.data for f in resumed] == [f.data for f in all_frames[3:]]


def test_resume_in_the_middle_of_a_live_run(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.latency_s = 0.3
    run_id = client.post("/v1/runs", json={"question": "Q?", "max_revisions": 0}).json()["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        first: list[Frame] = []
        for frame in frames(events):
            first.append(frame)
            if frame.event == "plan":
                break
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"
    last = first[-1].id
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last)}) as events:
        rest = [f for f in frames(events) if not f.comment]
    assert rest[0].id == last + 1
    assert rest[-1].event == "run.completed"


def test_pagination(client: httpx.Client) -> None:
    ids = [
        client.post("/v1/runs", json={"question": f"Q{i}?", "max_revisions": 0}).json()["run_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if before:
            params["before"] = before
        page = client.get("/v1/runs", params=params).json()
        seen += [r["run_id"] for r in page["data"]]
        if not page["has_more"]:
            break
        before = page["next_before"]
    assert seen == list(reversed(ids))


def test_unknown_run_is_404_everywhere(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/runs/run_nope"),
        ("GET", "/v1/runs/run_nope/events"),
        ("POST", "/v1/runs/run_nope/cancel"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "run_not_found"


@pytest.mark.parametrize("value", ["abc", "1_0", "-1", "+3", "1e3", str(2**53 + 1)])
def test_bad_last_event_id(client: httpx.Client, value: str) -> None:
    run_id = client.post("/v1/runs", json={"question": "Q?"}).json()["run_id"]
    response = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Last-Event-ID"
    assert response.json()["error"]["code"] == "invalid_last_event_id"


def test_a_finished_stream_tells_browsers_not_to_reconnect(client: httpx.Client) -> None:
    run_id = client.post("/v1/reason", json={"question": "Q?"}).json()["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        text = events.read().decode()
    assert text.startswith(f"retry: {RECONNECT_MS}\n\n")
    last = max(int(line.split(": ")[1]) for line in text.splitlines() if line.startswith("id: "))
    done = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last)})
    assert done.status_code == 204
    assert done.content == b""
    rest = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last - 1)})
    assert rest.status_code == 200
    assert "event: run.completed" in rest.text


def test_cancel_after_the_end_is_a_conflict(client: httpx.Client) -> None:
    run_id = client.post("/v1/reason", json={"question": "Q?"}).json()["run_id"]
    response = client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_finished"
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "completed"


def test_cancel_stops_further_model_calls(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.latency_s = 0.5
    stub.options.subtasks = 2
    run_id = client.post("/v1/runs", json={"question": "Q?"}).json()["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        for frame in frames(events):
            if frame.event == "task.started":
                break
    response = client.post(f"/v1/runs/{run_id}/cancel")
    cancelled_at = time.perf_counter()
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    view = client.get(f"/v1/runs/{run_id}").json()
    assert view["status"] == "cancelled"
    assert view["result"]["status"] == "cancelled"
    with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
        names = [f.event for f in frames(events) if not f.comment]
    assert names[-1] == "run.cancelled"
    again = client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    # No call starts after the cancel: the two workers in flight were dropped (the stub may
    # still record them when their scripted latency ends), and nothing came after them.
    assert len(stub.calls_of("worker")) <= 2
    assert all(c.started < cancelled_at for c in stub.calls)
    assert not stub.calls_of("synthesizer") and not stub.calls_of("critic")


def test_disconnecting_does_not_stop_the_run(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.latency_s = 0.2
    with client.stream(
        "POST", "/v1/reason", json={"question": "Q?", "max_revisions": 0}, headers=SSE
    ) as response:
        first = next(frames(response))
    run_id = first.data["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1"}) as events:
        names = [f.event for f in frames(events) if not f.comment]
    assert names[-1] == "run.completed"
    assert json.loads(client.get(f"/v1/runs/{run_id}").text)["status"] == "completed"
