"""The project's image on its own: the embedded model answers inside it, and it stops cleanly."""

import json
import time
import uuid

import httpx
import pytest

from api.backend.embedded import free_port
from tests.conftest import REPORT
from tests.docker.conftest import HOST_CA_CERTIFICATES
from tests.docker.engine import Engine

pytestmark = pytest.mark.docker


def wait_ready(url: str, within_s: float) -> float:
    """Seconds until ``/readyz`` answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} was not ready within {within_s} s")


def test_the_image_answers_with_its_embedded_model_and_stops_on_sigterm(docker: Engine, image: str) -> None:
    port, name = free_port(), f"reasoner-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    docker.run("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000", image)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, within_s=180)
        ready_s = time.monotonic() - started
        answered = httpx.post(
            f"{url}/v1/reason",
            json={"question": "What is 12 times 12, and is it a square number?", "max_subtasks": 2},
            timeout=600,
        )
        assert answered.status_code == 200, answered.text
        result = answered.json()
        assert result["status"] == "completed" and result["answer"].strip()
        assert result["usage"]["output_tokens"] > 0 and "planner" in result["by_node"]

        stopping = time.monotonic()
        docker.run("stop", "--time", "30", name, timeout=60)
        stopped_s = time.monotonic() - stopping
        state = json.loads(docker.run("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] == 0, state
        logs = docker.run("logs", name).stdout.splitlines()
        lines = [json.loads(line) for line in logs if line.strip()]
        assert lines and all({"ts", "level", "msg"} <= line.keys() for line in lines)
        assert any(line["msg"] == "model backend ready" and line["embedded"] for line in lines)
    finally:
        docker.run("rm", "--force", name, check=False)
    REPORT.append(
        f"docker: /readyz {ready_s:.1f} s after `docker run` (embedded model started), "
        f"answered a question, `docker stop` {stopped_s:.1f} s, exit code 0"
    )


def test_the_image_runs_unprivileged_without_a_compiler_or_the_build_certificates(
    docker: Engine, image: str
) -> None:
    config = json.loads(docker.run("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "reasoner"
    assert config["Healthcheck"]["Test"][0] == "CMD" and "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert {"HOST=0.0.0.0", "DATA_DIR=/data"} <= set(config["Env"])
    certificates = " ".join(
        f"/usr/local/share/ca-certificates/{c.name} /etc/ssl/certs/{c.stem}.pem"
        for c in HOST_CA_CERTIFICATES.glob("*.crt")
    )
    look = f"id -u; command -v gcc cc c++ cmake; ls {certificates} 2>/dev/null; true"
    inside = docker.run("run", "--rm", "--entrypoint", "sh", image, "-c", look).stdout.split()
    assert inside == ["10001"], inside
