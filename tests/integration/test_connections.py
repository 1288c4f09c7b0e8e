"""Connections that send nothing, too many connections, heads too large, and the log line when
descriptors run out; with each HTTP parser."""

import json
import logging
import resource
import socket
import time

import httpx
import pytest

from api.http.connections import ACCEPT_FAILURE, Throttle, raise_open_files_limit
from api.http.protocols import MAX_HEAD_BYTES
from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend


@pytest.fixture(params=["httptools", "h11"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return settings.model_copy(update={"http_parser": request.param})


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


def test_a_request_body_has_a_deadline(settings: Settings, stub: StubBackend) -> None:
    quick = settings.model_copy(update={"request_body_timeout_s": 0.5, "log_level": "warning"})
    body = b'{"question": "Q?"}'
    head = (
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body)
    )
    with Service(quick, stub_backend(stub)) as service:
        stalled = socket.create_connection(("127.0.0.1", service.port))
        stalled.sendall(head + b"{")
        started = time.monotonic()
        closed, reply = closed_by_server(stalled, 5)
        assert closed and 0.5 <= time.monotonic() - started < 3
        status, _, error = reply.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 408")
        assert json.loads(error)["error"]["code"] == "request_timeout"
        stalled.close()
        in_time = socket.create_connection(("127.0.0.1", service.port))
        in_time.sendall(head + body[:5])
        time.sleep(0.2)  # a slow body that arrives whole within the deadline is served
        in_time.sendall(body[5:])
        assert in_time.recv(4096).startswith(b"HTTP/1.1 202")
        assert not closed_by_server(in_time, 1)[0], "kept alive past the deadline: it met it"
        in_time.close()


def test_one_client_address_gets_its_share_of_the_connections(settings: Settings, stub: StubBackend) -> None:
    capped = settings.model_copy(
        update={"max_connections": 10, "max_connections_per_client": 2, "log_level": "warning"}
    )
    with Service(capped, stub_backend(stub)) as service:

        def connect(source: str, request: bytes) -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", service.port), source_address=(source, 0))
            sock.sendall(request)
            return sock

        greedy = [connect("127.0.0.2", b"GET /v1/runs HTTP/1.1\r\n") for _ in range(2)]  # heads unfinished
        extra = connect("127.0.0.2", b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n\r\n")
        closed, reply = closed_by_server(extra, 1)
        assert closed and reply.startswith(b"HTTP/1.1 503")
        assert b"retry-after: 1" in reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_many_connections"
        probe = connect("127.0.0.2", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert probe.recv(4096).startswith(b"HTTP/1.1 200"), "its health probes still get in"
        other = connect("127.0.0.3", b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n\r\n")
        assert other.recv(4096).startswith(b"HTTP/1.1 200"), "other addresses still get in"
        for sock in [*greedy, extra, probe, other]:
            sock.close()


def test_health_probes_have_slots_of_their_own_when_the_cap_is_full(
    settings: Settings, stub: StubBackend
) -> None:
    capped = settings.model_copy(
        update={"max_connections": 2, "max_connections_per_client": 2, "log_level": "warning"}
    )
    with Service(capped, stub_backend(stub)) as service:
        port = service.port
        held = [
            socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0)) for _ in range(2)
        ]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for path in ("/healthz", "/readyz"):
                probe = http.get(path)
                assert probe.status_code == 200 and probe.headers["connection"] == "close"
            refused = http.get("/v1/runs")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "too_many_connections"
        silent = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        closed, reply = closed_by_server(silent, 5)
        assert closed and reply.startswith(b"HTTP/1.1 503"), "a silent connection loses its probe slot"
        assert time.monotonic() - started < 2
        for sock in [*held, silent]:
            sock.close()


def test_a_request_head_larger_than_the_cap_gets_431(settings: Settings, stub: StubBackend) -> None:
    with Service(settings.model_copy(update={"log_level": "warning"}), stub_backend(stub)) as service:
        endless = socket.create_connection(("127.0.0.1", service.port))
        endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):
            endless.sendall(b"X-Filler: " + b"a" * 4000 + b"\r\n")  # never ends
        closed, reply = closed_by_server(endless, 5)
        assert closed and reply.startswith(b"HTTP/1.1 431")
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "head_too_large"
        endless.close()
        with httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as http:
            assert http.get("/healthz", headers={"X-Filler": "a" * (MAX_HEAD_BYTES - 200)}).status_code == 200
