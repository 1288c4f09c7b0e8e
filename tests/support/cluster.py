"""Several ``reasoner serve`` replicas on one Postgres database and one Redis prefix, in front of
the scripted backend, for the replica tests and the benchmark: ``start`` them (each calls the
stub with its own API key, ``replica-<i>``, so the stub knows who made a call), ``submit`` runs
and ``view`` them on any replica, and ``Follower`` a run's events on one replica in the
background with the time each arrived."""

import threading
from pathlib import Path
from typing import Any

import httpx

from tests.stub_backend import StubBackend
from tests.support.runs import follow
from tests.support.served import Served
from tests.support.services import REDIS_URL
from tests.support.sse import Frame


class Cluster:
    def __init__(self, replicas: list[Served]) -> None:
        self.replicas = replicas

    def __getitem__(self, index: int) -> Served:
        return self.replicas[index]

    def kill(self) -> None:
        for replica in self.replicas:
            replica.kill()


def start(
    stub: StubBackend, tmp_path: Path, database: str, prefix: str, n: int = 3, **env: object
) -> Cluster:
    settings: dict[str, object] = {"database_url": database, "redis_url": REDIS_URL, "redis_prefix": prefix}
    settings.update(env)
    replicas = [
        Served(stub, tmp_path / f"replica{i}", wait=False, llm_api_key=f"replica-{i}", **settings)
        for i in range(n)
    ]
    try:
        return Cluster([replica.ready() for replica in replicas])
    except BaseException:
        Cluster(replicas).kill()
        raise


class Follower(threading.Thread):
    """Follows a run's events on one replica in the background, noting when each arrived."""

    def __init__(self, url: str, run_id: str, after: int = 0) -> None:
        super().__init__(daemon=True)
        self.url, self.run_id, self.after = url, run_id, after
        self.frames: list[Frame] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for frame in follow(self.url, self.run_id, self.after):
                self.frames.append(frame)
        except BaseException as exc:
            self.error = exc

    def names(self) -> list[str]:
        return [str(f.event) for f in self.frames]

    def done(self, timeout_s: float) -> list[Frame]:
        self.join(timeout_s)
        assert not self.is_alive(), f"the stream on {self.url} did not end"
        assert self.error is None, self.error
        return self.frames


def submit(url: str, body: dict[str, Any]) -> str:
    response = httpx.post(f"{url}/v1/runs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def view(url: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}/v1/runs/{run_id}", timeout=30).json()
    return result
