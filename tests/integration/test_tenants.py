"""Tenants through the real HTTP app: a run is private to the key that made it (404 for any
other, so ids cannot be probed; an admin key sees all), and quotas per key hold, on SQLite and
on Postgres, across replicas too, without touching other keys."""

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend
from tests.support.runs import BODY, HELD, PLAN, until

KEYS = {"alice": "sk-alice-1f3a9c", "bob": "sk-bob-77e0d2a", "ops": "sk-ops-5b81c4e"}


def keys_file(tmp_path: Path, **limits: dict[str, object]) -> Path:
    lines = ["keys:"]
    for name, key in KEYS.items():
        extra = "".join(f", {k}: {v}" for k, v in limits.get(name, {}).items())
        lines.append(f'  - {{name: {name}, key: "{key}"{", admin: true" if name == "ops" else ""}{extra}}}')
    path = tmp_path / "keys.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def as_key(url: str, name: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEYS[name]}"}, timeout=60)


@pytest.fixture(params=["sqlite", "postgres"])
def keyed(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    update: dict[str, object] = {"api_keys_file": keys_file(tmp_path)}
    if request.param == "postgres":
        update["database_url"] = request.getfixturevalue("database")
    return settings.model_copy(update=update)


def test_a_run_is_private_to_its_key(stub: StubBackend, keyed: Settings) -> None:
    with Service(keyed, stub_backend(stub)) as service:
        url = service.url
        with as_key(url, "alice") as alice, as_key(url, "bob") as bob, as_key(url, "ops") as ops:
            chat = alice.post(
                "/v1/chat/completions",
                json={"model": "reasoner", "messages": [{"role": "user", "content": "Hi?"}]},
            )
            behind_chat = chat.headers["X-Run-Id"]
            stub.options.plan, stub.options.slow = PLAN, dict(HELD)
            held = alice.post("/v1/runs", json=BODY).json()["run_id"]  # its last two workers are held
            for run_id in (held, behind_chat):
                for method, path in [
                    ("GET", f"/v1/runs/{run_id}"),
                    ("GET", f"/v1/runs/{run_id}/events"),
                    ("POST", f"/v1/runs/{run_id}/cancel"),
                ]:
                    answer = bob.request(method, path)
                    assert answer.status_code == 404, (method, path)
                    assert answer.json()["error"]["code"] == "run_not_found"
                    assert answer.json() == bob.request(
                        method, path.replace(run_id, "run_nosuchrun0000")
                    ).json() | {"error": answer.json()["error"]}
            assert bob.get("/v1/runs").json()["data"] == []
            assert alice.get(f"/v1/runs/{held}").json()["status"] == "running", "bob's cancel did nothing"
            mine = [r["run_id"] for r in alice.get("/v1/runs").json()["data"]]
            assert sorted(mine) == sorted([held, behind_chat])
            bobs = bob.post("/v1/runs", json={"question": "Bob's own?"}).json()["run_id"]
            assert alice.get(f"/v1/runs/{bobs}").status_code == 404
            everyone = {r["run_id"] for r in ops.get("/v1/runs").json()["data"]}
            assert everyone == {held, behind_chat, bobs}
            assert ops.get(f"/v1/runs/{held}").status_code == 200
            assert ops.post(f"/v1/runs/{held}/cancel").json()["status"] == "cancelled", "an admin may cancel"


def test_usage_names_the_key_and_an_admin_may_ask_for_any(stub: StubBackend, keyed: Settings) -> None:
    with Service(keyed, stub_backend(stub)) as service, as_key(service.url, "alice") as alice:
        alice.post("/v1/reason", json={"question": "Alice's?"})
        with as_key(service.url, "bob") as bob, as_key(service.url, "ops") as ops:
            assert alice.get("/v1/usage").json()["key"] == "alice"
            assert alice.get("/v1/usage", params={"key": "alice"}).json()["runs"] == 1
            refused = bob.get("/v1/usage", params={"key": "alice"})
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "key_not_found"
            theirs = ops.get("/v1/usage", params={"key": "alice"}).json()
            assert theirs["key"] == "alice" and theirs["runs"] == 1
            assert ops.get("/v1/usage", params={"key": "nobody"}).status_code == 404


def test_requests_per_minute_are_counted_per_key(
    stub: StubBackend, settings: Settings, tmp_path: Path
) -> None:
    limited = settings.model_copy(
        update={"api_keys_file": keys_file(tmp_path, alice={"requests_per_minute": 3})}
    )
    with (
        Service(limited, stub_backend(stub)) as service,
        as_key(service.url, "alice") as alice,
        as_key(service.url, "bob") as bob,
    ):
        accepted = [alice.post("/v1/runs", json={"question": f"Q{i}?"}).status_code for i in range(3)]
        refused = alice.post("/v1/runs", json={"question": "One more?"})
        chat = alice.post(
            "/v1/chat/completions",
            json={"model": "reasoner", "messages": [{"role": "user", "content": "Hi?"}]},
        )
        assert accepted == [202, 202, 202]
        assert refused.status_code == 429 and chat.status_code == 429
        assert refused.json()["error"]["code"] == "requests_per_minute_exceeded"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert bob.post("/v1/runs", json={"question": "Bob?"}).status_code == 202, "other keys unaffected"
        assert alice.get("/v1/runs").status_code == 200, "reads are not counted"


def run_concurrently(url: str, name: str, count: int, body: dict[str, object]) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    def one(i: int) -> None:
        with as_key(url, name) as http:
            answers.append(http.post("/v1/reason", json={**body, "question": f"{body['question']} {i}"}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.fixture
def replicas(stub: StubBackend, settings: Settings, tmp_path: Path, database: str) -> Iterator[list[Service]]:
    """Two replicas on one Postgres database, alice limited to 6,000 tokens a day."""
    shared = settings.model_copy(
        update={
            "api_keys_file": keys_file(tmp_path, alice={"tokens_per_day": 6000}),
            "database_url": database,
        }
    )
    with Service(shared, stub_backend(stub)) as one, Service(shared, stub_backend(stub)) as two:
        yield [one, two]


def test_tokens_per_day_are_never_exceeded_across_replicas(
    stub: StubBackend, replicas: list[Service]
) -> None:
    stub.options.answer_tokens = 60
    body = {"question": "A question for the quota", "max_subtasks": 2, "max_revisions": 0}
    answers = [a for r in replicas for a in run_concurrently(r.url, "alice", 6, body)]
    done = [a.json() for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert done and refused, "some runs fit the day, the rest are refused"
    assert {a.json()["error"]["code"] for a in refused} == {"tokens_per_day_exceeded"}
    assert all(0 < int(a.headers["Retry-After"]) <= 86400 for a in refused)
    with as_key(replicas[0].url, "alice") as alice:
        spent = alice.get("/v1/usage").json()["total_tokens"]
    assert spent == sum(r["usage"]["total_tokens"] for r in done) <= 6000
    with as_key(replicas[1].url, "bob") as bob:
        assert bob.post("/v1/reason", json=body).status_code == 200, "other keys unaffected"


def test_runs_in_flight_hold_their_budgets_against_the_day(
    stub: StubBackend, replicas: list[Service]
) -> None:
    """A run in flight holds its whole granted budget until it ends; a new run gets what is left."""
    stub.options.slow = {"Part": 120.0}
    stub.options.plan = [{"id": "t1", "question": "Part 1?", "depends_on": []}]
    with as_key(replicas[0].url, "alice") as alice, as_key(replicas[1].url, "alice") as elsewhere:
        first = alice.post("/v1/runs", json={"question": "Held?", "token_budget": 5000}).json()["run_id"]
        second = elsewhere.post("/v1/runs", json={"question": "More?", "token_budget": 2000})
        assert second.status_code == 202, "granted the 1,000 tokens that are left"
        refused = alice.post("/v1/runs", json={"question": "Even more?"})
        assert refused.status_code == 429, "all 6,000 are held by the runs in flight"
        for run_id in (first, second.json()["run_id"]):
            until(
                lambda r=run_id: alice.post(f"/v1/runs/{r}/cancel").status_code in (200, 409), 30, "a cancel"
            )
        until(
            lambda: all(
                alice.get(f"/v1/runs/{r['run_id']}").json()["status"] not in ("queued", "running")
                for r in alice.get("/v1/runs").json()["data"]
            ),
            30,
            "the runs to end",
        )
        assert alice.post("/v1/runs", json={"question": "Again?"}).status_code == 202, (
            "what they did not spend is back"
        )
