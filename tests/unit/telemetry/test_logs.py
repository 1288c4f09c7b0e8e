"""The log setup: below INFO only the project's own loggers are heard, unless LOG_PAYLOADS."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from api.telemetry.logs import bare_url, configure_logging

NAMES = ("api.runs.runner", "graph.calls", "aiosqlite", "langchain_core", "sse_starlette.sse", "a_library")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """configure_logging's handler, writing to a buffer; the logging setup is restored after."""
    root = logging.getLogger()
    saved = root.level, root.handlers[:], {n: logging.getLogger(n).level for n in NAMES}
    out = io.StringIO()
    try:
        yield out
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def heard(out: io.StringIO, payloads: bool) -> set[str]:
    configure_logging("debug", payloads=payloads)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logging.getLogger("a_library").setLevel(logging.DEBUG)  # one that sets its own level, as uvicorn does
    for name in NAMES:
        logging.getLogger(name).debug("executing with the question %s", "Q?")
        logging.getLogger(name).info("an info line")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {line["logger"] for line in lines if line["level"] == "info"} == set(NAMES)
    return {line["logger"] for line in lines if line["level"] == "debug"}


def test_below_info_only_the_projects_own_lines(captured: io.StringIO) -> None:
    assert heard(captured, payloads=False) == {"api.runs.runner", "graph.calls"}


def test_log_payloads_lets_every_debug_line_through(captured: io.StringIO) -> None:
    assert heard(captured, payloads=True) == set(NAMES)


@pytest.mark.parametrize(
    ("url", "bare"),
    [
        ("https://user:sk-secret@llm.example:8443/v1?api-key=sk-secret", "https://llm.example:8443/v1"),
        ("http://127.0.0.1:9000/v1", "http://127.0.0.1:9000/v1"),
        ("http://[::1]:9000/v1", "http://[::1]:9000/v1"),
    ],
)
def test_a_logged_url_has_no_credentials_or_query(url: str, bare: str) -> None:
    assert bare_url(url) == bare
