"""Starting and stopping the embedded model as `reasoner serve` does, with the service's own
PORT and HOST in the environment (llama-cpp-python's server reads both ahead of its flags)."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.backend.embedded import child_environment, free_port
from tests.support.runs import until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SERVICE_HOST = "127.0.0.2"
"""Loopback, but not the model server's 127.0.0.1: a model server that took HOST would be
unreachable, and one that took PORT would collide with the service."""


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))},
        "PORT": str(port),
        "HOST": SERVICE_HOST,
        "DATA_DIR": str(data_dir),
        "MAX_OUTPUT_TOKENS": "24",
        "MAX_SUBTASKS": "1",
        "MAX_REVISIONS": "0",
        "LOG_LEVEL": "warning",
    }
    with (data_dir.parent / "serve.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
        )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_the_model_server_inherits_only_what_it_needs() -> None:
    parent = {"PATH": "/usr/bin", "HOME": "/root", "PORT": "9000", "HOST": "0.0.0.0", "API_KEYS": "secret"}
    assert child_environment(parent) == {"PATH": "/usr/bin", "HOME": "/root"}


def test_serves_on_port_and_host_from_the_environment(data_dir: Path) -> None:
    port = free_port()
    process = serve(data_dir, port)
    try:
        url = f"http://{SERVICE_HOST}:{port}"
        started = time.monotonic()

        def up() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return process.poll() is not None

        until(up, 60, "the service to become ready")
        assert process.poll() is None, (data_dir.parent / "serve.log").read_text()[-2000:]
        ready_s = time.monotonic() - started
        response = httpx.post(f"{url}/v1/reason", json={"question": "What is 2 plus 2?"}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["input_tokens_exact"] is True
        model_servers = children(process.pid)
        assert model_servers, "the embedded model runs as a child process"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) is not None
        for pid in model_servers:
            until(lambda pid=pid: gone(pid), 10, f"the model server {pid} to exit")
        assert ready_s < 60
    finally:
        process.kill()
        process.wait()


def test_sigterm_during_startup_stops_at_once(data_dir: Path) -> None:
    process = serve(data_dir, free_port())
    try:
        until(lambda: children(process.pid), 30, "the model server to start")
        model_servers = children(process.pid)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        process.wait(timeout=10)
        assert time.monotonic() - stopped < 3, "the startup wait is stopped by the signal"
        for pid in model_servers:
            until(lambda pid=pid: gone(pid), 10, f"the model server {pid} to exit (no orphan)")
    finally:
        process.kill()
        process.wait()
