"""Idempotency-Key: a client that retries a POST that starts a run gets the run its first try
made (its state, its result or its stream), on any replica; the same key with another request
is refused; the key is scoped to the caller."""

import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend
from tests.support.sse import frames

CHAT = {"model": "reasoner", "messages": [{"role": "user", "content": "Why retry?"}], "stream": True}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_retried_submit_returns_the_same_run(client: httpx.Client, stub: StubBackend) -> None:
    first = client.post("/v1/runs", json={"question": "Once?"}, headers=keyed("k-1"))
    again = client.post("/v1/runs", json={"question": "Once?"}, headers=keyed("k-1"))
    assert first.status_code == again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    other = client.post("/v1/runs", json={"question": "Once?"}, headers=keyed("k-2"))
    assert other.json()["run_id"] != first.json()["run_id"]
    plain = [client.post("/v1/runs", json={"question": "Once?"}).json()["run_id"] for _ in range(2)]
    assert plain[0] != plain[1], "without a key, every POST is a new run"


def test_a_retried_reason_gets_the_first_result_without_new_calls(
    client: httpx.Client, stub: StubBackend
) -> None:
    first = client.post("/v1/reason", json={"question": "Once?"}, headers=keyed("r-1")).json()
    calls = len(stub.calls)
    again = client.post("/v1/reason", json={"question": "Once?"}, headers=keyed("r-1"))
    assert again.json() == first and again.headers["Idempotent-Replayed"] == "true"
    assert len(stub.calls) == calls, "no model call for a replay"


def test_a_retried_streamed_chat_completion_streams_the_same_run(client: httpx.Client) -> None:
    def stream() -> tuple[str, list[str]]:
        with client.stream("POST", "/v1/chat/completions", json=CHAT, headers=keyed("c-1")) as response:
            return response.headers["X-Run-Id"], [f.data for f in frames(response) if not f.comment]

    (run_a, first), (run_b, again) = stream(), stream()
    assert run_a == run_b and again == first and first[-1] == "[DONE]"


def test_the_same_key_with_another_request_is_refused(client: httpx.Client) -> None:
    client.post("/v1/runs", json={"question": "One thing?"}, headers=keyed("x-1"))
    for path, body in [
        ("/v1/runs", {"question": "Another thing?"}),
        ("/v1/reason", {"question": "One thing?"}),  # the same body, on another route
    ]:
        refused = client.post(path, json=body, headers=keyed("x-1"))
        assert refused.status_code == 409, path
        assert refused.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside", "ключ"])
def test_a_malformed_key_is_a_clear_error(client: httpx.Client, key: str) -> None:
    refused = client.post("/v1/runs", json={"question": "Q?"}, headers={"Idempotency-Key": key.encode()})
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "header.Idempotency-Key"


def test_a_key_is_scoped_to_its_caller(stub: StubBackend, settings: Settings) -> None:
    with Service(
        settings.model_copy(update={"api_keys": SecretStr("sk-one-key,sk-two-key")}), stub_backend(stub)
    ) as service:
        runs = []
        for key in ("sk-one-key", "sk-two-key"):
            with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}) as http:
                runs.append(
                    http.post("/v1/runs", json={"question": "Q?"}, headers=keyed("same")).json()["run_id"]
                )
    assert runs[0] != runs[1]


def test_retries_on_other_replicas_make_no_duplicates(
    stub: StubBackend, settings: Settings, database: str
) -> None:
    """Each of 15 requests is sent to both replicas at once, as a client that timed out on one
    and retried on the other: 15 runs, not 30."""
    shared = settings.model_copy(update={"database_url": database})
    with Service(shared, stub_backend(stub)) as one, Service(shared, stub_backend(stub)) as two:
        answers: list[str] = []

        def post(url: str, i: int) -> None:
            body = {"question": f"Request {i}?"}
            with httpx.Client(base_url=url, timeout=60) as http:
                answers.append(http.post("/v1/runs", json=body, headers=keyed(f"retry-{i}")).json()["run_id"])

        threads = [threading.Thread(target=post, args=(s.url, i)) for i in range(15) for s in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 30 and len(set(answers)) == 15
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (15,)


def test_keys_are_stored_hashed(client: httpx.Client, tmp_path: Path) -> None:
    client.post("/v1/runs", json={"question": "Q?"}, headers=keyed("secret-idempotency-key-42"))
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("reasoner.db*"))
    assert b"secret-idempotency-key-42" not in stored
