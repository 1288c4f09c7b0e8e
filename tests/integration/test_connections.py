"""Connections that send nothing, too many connections, and the log line when descriptors run out."""

import json
import logging
import resource
import socket
import time

import httpx

from api.connections import ACCEPT_FAILURE, Throttle, raise_open_files_limit
from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend


def closed_by_server(sock: socket.socket, within_s: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection or the time is up."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    return True, received


def test_a_connection_that_sends_no_request_is_closed(settings: Settings, stub: StubBackend) -> None:
    quick = settings.model_copy(update={"header_timeout_s": 0.3, "log_level": "warning"})
    with Service(quick, stub_backend(stub)) as service:
        port = service.port
        silent = socket.create_connection(("127.0.0.1", port))
        dribbling = socket.create_connection(("127.0.0.1", port))
        dribbling.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert closed_by_server(silent, 5)[0]
        assert closed_by_server(dribbling, 5)[0]
        assert time.monotonic() - started < 3
        silent.close()
        dribbling.close()
        kept_alive = socket.create_connection(("127.0.0.1", port))
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request, dribbled
        assert closed_by_server(kept_alive, 5)[0], "a later request's head has the same deadline"
        kept_alive.close()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/healthz").status_code == 200
            assert http.post("/v1/reason", json={"question": "Q?"}).status_code == 200, "slow runs are fine"


def test_connections_beyond_the_cap_get_503_in_the_error_shape(settings: Settings, stub: StubBackend) -> None:
    capped = settings.model_copy(update={"max_connections": 3, "log_level": "warning"})
    with Service(capped, stub_backend(stub)) as service:
        port = service.port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", port))
        closed, reply = closed_by_server(extra, 5)
        assert closed
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        for sock in [*held, extra]:
            sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except (httpx.HTTPError, AssertionError):
                assert time.monotonic() < deadline, "freed connections count no more"


def test_the_accept_failure_log_line_is_throttled() -> None:
    throttle = Throttle(ACCEPT_FAILURE, every_s=60)
    records = [logging.makeLogRecord({"msg": ACCEPT_FAILURE, "levelno": logging.ERROR}) for _ in range(1000)]
    passed = [r for r in records if throttle.filter(r)]
    assert len(passed) == 1
    other = logging.makeLogRecord({"msg": "something else"})
    assert throttle.filter(other)


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_open_files_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
