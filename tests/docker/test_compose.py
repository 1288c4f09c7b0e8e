"""docker-compose.yml as users run it: postgres, redis, the llm, two api replicas and nginx."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from api.backend.embedded import free_port
from graph.events import TERMINAL_EVENTS
from tests.conftest import REPORT
from tests.docker.conftest import ROOT
from tests.docker.engine import Engine
from tests.docker.images import ensure_third_party, third_party_images
from tests.docker.test_image import wait_ready
from tests.support.runs import until
from tests.support.sse import Frame, frames

pytestmark = pytest.mark.docker

COMPOSE_FILE = ROOT / "docker-compose.yml"
PROJECT = "reasoner-test"
REPLICAS = 2
LEASE_S = 5
"""A killed replica's runs are taken up after this (the compose file's default is 15 s)."""

SMALL = {"max_subtasks": 2, "max_revisions": 0}


@dataclass
class Stack:
    docker: Engine
    url: str
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 600) -> str:
        argv = ["--file", str(COMPOSE_FILE), "--project-name", PROJECT, *args]
        return self.docker.compose(*argv, timeout=timeout, env=self.env).stdout

    def replicas(self) -> dict[str, str]:
        """The running api containers' addresses by container id."""
        ids = self.compose("ps", "--quiet", "api").split()
        networks = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return {i: self.docker.run("inspect", "--format", networks, i).stdout.strip() for i in ids}

    def finished_on(self, container: str) -> set[str]:
        """The runs a replica's log says it finished."""
        lines = (json.loads(line) for line in self.docker.run("logs", container).stdout.splitlines() if line)
        return {line["run_id"] for line in lines if line.get("msg") == "run finished"}


@pytest.fixture(scope="module")
def stack(docker: Engine, image: str) -> Iterator[Stack]:
    stand_ins = {name: ensure_third_party(docker, name) for name in third_party_images(COMPOSE_FILE)}
    port = free_port()
    up = Stack(docker, f"http://127.0.0.1:{port}", {"PORT": str(port), "LEASE_S": str(LEASE_S)})
    started = time.monotonic()
    try:
        up.compose("up", "--detach", "--no-build", "--scale", f"api={REPLICAS}", timeout=900)
        wait_ready(up.url, within_s=300)
        REPORT.append(
            f"docker compose: {', '.join(f'{n} {how}' for n, how in stand_ins.items())}; "
            f"{REPLICAS} api replicas ready through nginx {time.monotonic() - started:.0f} s after `up`"
        )
        yield up
    finally:
        up.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")


def test_a_question_through_nginx_is_answered(stack: Stack) -> None:
    answered = httpx.post(
        f"{stack.url}/v1/reason", json={"question": "Why is the sky blue?", **SMALL}, timeout=600
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "completed" and answered.json()["answer"].strip()


def test_nginx_spreads_runs_over_the_replicas(stack: Stack) -> None:
    runs = [
        httpx.post(
            f"{stack.url}/v1/runs", json={"question": f"What is {n} + {n}?", **SMALL}, timeout=30
        ).json()
        for n in range(2 * REPLICAS)
    ]

    def finished() -> bool:
        views = [httpx.get(f"{stack.url}/v1/runs/{r['run_id']}", timeout=30).json() for r in runs]
        return all(v["status"] not in ("queued", "running") for v in views)

    until(finished, timeout_s=900, what="the runs to finish", every_s=1)
    ran = {
        container: stack.finished_on(container) & {r["run_id"] for r in runs}
        for container in stack.replicas()
    }
    assert len(ran) == REPLICAS and all(ran.values()), ran


def test_a_run_followed_through_nginx_completes_when_its_replica_is_killed(stack: Stack) -> None:
    running_on, address = next(iter(stack.replicas().items()))
    submitted = httpx.post(
        f"http://{address}:8000/v1/runs", json={"question": "Why do leaves fall?", **SMALL}
    )
    run_id = submitted.json()["run_id"]
    seen: list[Frame] = []
    reconnects = 0
    killed_at = 0.0
    deadline = time.monotonic() + 900
    while not (seen and seen[-1].event in TERMINAL_EVENTS) and time.monotonic() < deadline:
        last = {"Last-Event-ID": str(seen[-1].id)} if seen else {}
        try:  # as the page's EventSource does: on a cut, reconnect from the last event seen
            with httpx.stream(
                "GET", f"{stack.url}/v1/runs/{run_id}/events", headers=last, timeout=60
            ) as stream:
                for frame in frames(stream):
                    if frame.comment:
                        continue
                    seen.append(frame)
                    if not killed_at and frame.event == "stage":  # the planner is at work
                        stack.docker.run("kill", running_on)
                        killed_at = time.monotonic()
        except httpx.HTTPError:
            reconnects += 1
    names = [frame.event for frame in seen]
    assert killed_at and names[-1] == "run.completed", names
    assert "run.resumed" in names
    ids = [frame.id for frame in seen]
    assert ids == sorted(set(ids)), "every event once, in order"
    REPORT.append(
        f"docker compose: replica killed while the run was followed through nginx; run.resumed, "
        f"completed {time.monotonic() - killed_at:.0f} s later, {reconnects} reconnects"
    )
