"""No log line carries a question, an answer, a prompt or a key: ``reasoner serve`` at
LOG_LEVEL=debug runs questions (answered, streamed, followed) on SQLite and on Postgres, and its
whole log is searched for them. LOG_PAYLOADS=true lets the libraries' payloads through, as asked."""

from pathlib import Path

import httpx
import pytest

from tests.stub_backend import StubBackend
from tests.support.served import Served
from tests.support.sse import frames

QUESTION = "How many zorblax quanta fit in a purple teacup?"
SUBQUESTION = "What is a zorblax quantum made of?"
WORKER_ANSWER = "Quibbleberry foam, mostly."
ANSWER = "Eleventeen quanta of quibbleberry foam."
KEY = "sk-caller-7f3e9a"
UPSTREAM_KEY = "sk-upstream-51c0d2"
SECRETS = {
    "question": QUESTION,
    "sub-question (a prompt)": SUBQUESTION,
    "worker answer": WORKER_ANSWER,
    "answer": ANSWER,
    "API key": KEY,
    "backend key": UPSTREAM_KEY,
}


def run_everything(stub: StubBackend, data_dir: Path, **env: object) -> str:
    """Ask in every way the API offers, then return the process's whole log."""
    stub.options.plan = [{"id": "t1", "question": SUBQUESTION, "depends_on": []}]
    stub.options.worker_reply = WORKER_ANSWER
    stub.options.synthesizer_reply = ANSWER
    served = Served(stub, data_dir, log_level="debug", api_keys=KEY, llm_api_key=UPSTREAM_KEY, **env)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        with httpx.Client(base_url=served.url, headers=auth, timeout=30) as http:
            reason = http.post("/v1/reason", json={"question": QUESTION})
            assert reason.json()["answer"] == ANSWER
            chat = {"model": "reasoner", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
            with http.stream("POST", "/v1/chat/completions", json=chat) as streamed:
                assert ANSWER.split()[0] in streamed.read().decode()
            run_id = http.post("/v1/runs", json={"question": QUESTION}).json()["run_id"]
            with http.stream("GET", f"/v1/runs/{run_id}/events") as events:
                names = [f.event for f in frames(events) if not f.comment]
        assert names[-1] == "run.completed"
    finally:
        served.kill()
    return served.log.read_text()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_debug_log_holds_no_question_answer_prompt_or_key(
    stub: StubBackend, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    env = {"database_url": request.getfixturevalue("database")} if store == "postgres" else {}
    log = run_everything(stub, tmp_path / "data", **env)
    assert len(log.splitlines()) > 5, "the log was written"
    assert '"level": "debug"' in log, "debug lines were logged"
    leaks = {what: line for what, text in SECRETS.items() for line in log.splitlines() if text in line}
    assert not leaks, leaks


def test_log_payloads_lets_the_libraries_payloads_through(stub: StubBackend, tmp_path: Path) -> None:
    # Checkpoints after every step: the state, question included, goes through aiosqlite (by
    # default a run that ends writes none, and openai's client no longer logs its requests).
    log = run_everything(stub, tmp_path / "data", log_payloads="true", checkpoint_durability="sync")
    assert '"logger": "httpcore' in log, "asked for, the libraries' debug lines are logged"
    assert QUESTION in log, "asked for, the libraries' debug lines (aiosqlite's SQL arguments) show it"
