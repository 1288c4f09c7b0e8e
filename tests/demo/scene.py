"""What both recordings show: one question, and the scripted backend's plan, pace and answers."""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.stub_backend import MODEL_ENV, StubBackend, StubOptions
from tests.support.served import Served

DOCS = Path(__file__).resolve().parents[2] / "docs"

QUESTION = (
    "How old was the president of the country that won the 2018 World Cup when it won, "
    "and where was the final played?"
)

PLAN = [
    {"id": "t1", "question": "Which country won the 2018 World Cup?", "depends_on": []},
    {"id": "t2", "question": "Who was its president at the time?", "depends_on": ["t1"]},
    {"id": "t3", "question": "How old was that president then?", "depends_on": ["t2"]},
    {"id": "t4", "question": "Where was the 2018 final played?", "depends_on": []},
]
"""A chain (t1 → t2 → t3) beside an independent step (t4)."""

ANSWER = (
    "France won the 2018 World Cup; its president, Emmanuel Macron, was 40 years old. "
    "The final was played at the Luzhniki Stadium in Moscow."
)
"""The synthesizer's scripted reply (the workers echo their sub-questions)."""

VERDICTS = json.dumps({"verdicts": [{"task_id": t["id"], "verdict": "accept", "feedback": ""} for t in PLAN]})
"""The critic accepts every answer."""


def scripted_backend() -> StubBackend:
    """The stub, paced so that each step can be watched: the planner writes its tasks one by one,
    each worker takes 1.5-3 s, the synthesizer writes about a dozen words a second."""
    return StubBackend(
        StubOptions(
            latency_s=0.8,
            plan=PLAN,
            echo_subquestion=True,
            critic_reply=VERDICTS,
            synthesizer_reply=ANSWER,
            role_tokens_per_s={"planner": 25.0, "synthesizer": 12.0},
            slow={"won the 2018": 2.0, "president at": 1.5, "How old": 1.5, "final played": 3.0},
        )
    )


def service_env(stub: StubBackend, data_dir: Path) -> dict[str, str]:
    """The environment of a ``reasoner`` command pointed at ``stub``, storing in ``data_dir``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))}
    return {**inherited, "LLM_BASE_URL": stub.base_url, **MODEL_ENV, "DATA_DIR": str(data_dir)}


@contextmanager
def served_demo() -> Iterator[Served]:
    """``reasoner serve`` on a free loopback port against the scripted backend, in a temporary
    DATA_DIR; both stopped (and the directory removed) at the end."""
    with scripted_backend() as stub, tempfile.TemporaryDirectory(prefix="reasoner-demo-") as tmp:
        served = Served(stub, Path(tmp) / "data")
        try:
            yield served
        finally:
            served.process.terminate()
            served.process.wait(timeout=30)
