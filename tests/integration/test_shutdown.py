"""SIGTERM: not ready, no new runs, in-flight runs finish within the grace period or are stored
as interrupted, streams get a final event, and the store stays whole. Also: dropped streams
leave nothing behind."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.local_model import free_port
from tests.conftest import Service
from tests.sse import frames
from tests.stub_backend import MODEL_ENV, StubBackend

ROOT = Path(__file__).resolve().parents[2]


class Served:
    """``reasoner serve`` in its own process, so it can receive signals."""

    def __init__(self, stub: StubBackend, data_dir: Path, grace_s: float) -> None:
        self.port = free_port()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("LLM_", "OPENAI_")) and k not in MODEL_ENV
            },
            "LLM_BASE_URL": stub.base_url,
            **MODEL_ENV,
            "DATA_DIR": str(data_dir),
            "SHUTDOWN_GRACE_S": str(grace_s),
            "LOG_LEVEL": "warning",
        }
        self.log = data_dir.parent / "serve.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("the service did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run_until_sigterm(served: Served) -> tuple[str, list[str], int, int]:
    """Start a run, SIGTERM once its plan is out; return its id, its stream's events, and what
    /readyz and a new run got during the drain."""
    with httpx.Client(base_url=served.url, timeout=60) as http:
        run_id = http.post("/v1/runs", json={"question": "Q?", "max_revisions": 0}).json()["run_id"]
        names: list[str] = []
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            stream = frames(response)
            for frame in stream:
                names.append(str(frame.event))
                if frame.event == "plan":
                    break
            served.process.send_signal(signal.SIGTERM)
            with httpx.Client(base_url=served.url, timeout=10) as other:
                ready = other.get("/readyz").status_code
                refused = other.post("/v1/runs", json={"question": "Q?"})
            names += [str(f.event) for f in stream if not f.comment]
    assert refused.json()["error"]["code"] == "shutting_down"
    return run_id, names, ready, refused.status_code


def stored_status(data_dir: Path, run_id: str) -> tuple[str, str]:
    db = sqlite3.connect(data_dir / "reasoner.db")
    try:
        status = db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()[0]
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return status, check


@pytest.mark.parametrize(
    ("latency_s", "grace_s", "final"),
    [(0.4, 20, "completed"), (1.5, 0.5, "interrupted")],
    ids=["finishes-within-grace", "interrupted-past-grace"],
)
def test_sigterm_drains_in_flight_runs(
    stub: StubBackend, data_dir: Path, latency_s: float, grace_s: float, final: str
) -> None:
    stub.options.latency_s = latency_s
    served = Served(stub, data_dir, grace_s=grace_s)
    try:
        run_id, names, ready, refused = run_until_sigterm(served)
        served.process.wait(timeout=30)  # the server exits by itself once drained
    finally:
        served.stop()
    assert (ready, refused) == (503, 503)
    assert names[-1] == f"run.{final}"
    assert stored_status(data_dir, run_id) == (final, "ok")


def test_a_dropped_stream_leaves_no_follower_behind(service: Service, stub: StubBackend) -> None:
    stub.options.latency_s = 0.3
    lookup = service.server.config.app.state.lookup  # type: ignore[attr-defined]
    with httpx.Client(base_url=service.url, timeout=30) as http:
        run_id = http.post("/v1/runs", json={"question": "Q?", "max_revisions": 0}).json()["run_id"]
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            for frame in frames(response):
                if frame.event == "plan":
                    break
        assert http.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
            names = [f.event for f in frames(response) if not f.comment]
    assert names[-1] == "run.completed"
    assert lookup.followers == 0
    assert service.server.config.app.state.runner.active == 0  # type: ignore[attr-defined]
