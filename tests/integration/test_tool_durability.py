"""A tool call that returned is not made again after a crash: ``kill -9`` while the model call
after it is out, restart, and the resumed run goes on from the tool's journaled outcome."""

import re
import sqlite3
from pathlib import Path

import httpx

from tests.stub_backend import Fault, StubBackend
from tests.support.runs import follow, until, workers_received
from tests.support.served import Served, integrity
from tests.support.sse import frames

PLAN = [{"id": "t1", "question": "calculate: 17 * 3", "depends_on": []}]
BODY = {"question": "What is 17 * 3?", "max_subtasks": 1, "max_revisions": 0}


def outcome_journaled(data_dir: Path, run_id: str) -> bool:
    db = sqlite3.connect(data_dir / "reasoner.db")
    try:
        rows = db.execute("SELECT output FROM calls WHERE run_id=?", (run_id,)).fetchall()
    finally:
        db.close()
    return any(output and '"outcomes": {"call_' in output for (output,) in rows)


def test_a_resumed_run_does_not_call_again_a_tool_whose_outcome_it_has(
    stub: StubBackend, tmp_path: Path
) -> None:
    stub.options.plan = PLAN
    stub.inject("worker", Fault(status=200, hang_s=60, match="<tool_result"))
    data_dir = tmp_path / "data"
    first = Served(stub, data_dir)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        run_id = http.post("/v1/runs", json=BODY).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            before = []
            for frame in frames(response):
                if not frame.comment:
                    before.append(frame)
                if frame.event == "tool.result":
                    break
        assert 'reasoner_tool_calls_total{outcome="ok",tool="calculator"} 1.0' in http.get("/metrics").text
    until(
        lambda: any("<tool_result" in last for last in workers_received(stub)), 10, "the call after the tool"
    )
    until(lambda: outcome_journaled(data_dir, run_id), 10, "the tool's outcome in the journal")
    first.kill()
    assert integrity(data_dir) == "ok"

    restarted = Served(stub, data_dir)
    try:
        after = list(follow(restarted.url, run_id, before[-1].id))
        metrics = httpx.get(f"{restarted.url}/metrics").text
    finally:
        restarted.kill()
    assert after[-1].event == "run.completed", [f.event for f in after]
    result = after[-1].data["result"]
    assert result["subanswers"][0]["answer"] == "The result is 51."
    made = re.findall(r"^reasoner_tool_calls_total\{.*", metrics, re.MULTILINE)
    assert made == [], "the restarted process made no tool call"
    asked = [last for last in workers_received(stub) if "<tool_result" not in last]
    assert len(asked) == 1, "the reply that asked for the tool was not asked for again"
    steps = [(c["step"], c["error"]) for c in result["calls"] if c["node"] == "worker"]
    assert steps == [(0, None), (1, "interrupted"), (1, None)]
