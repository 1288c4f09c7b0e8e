"""Slow clients cannot lock anyone out: a request body has a deadline, one client address gets a
share of the connections, not all of them, and health probes have slots of their own.

Through the real server process, from loopback addresses of their own (127.0.0.2, …: on Linux
the whole 127/8 answers), so that the per-client cap and the global cap are both reached."""

import contextlib
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.http.connections import raise_open_files_limit
from tests.stub_backend import StubBackend
from tests.support.served import Served

BODY_TIMEOUT_S = 4.0
PER_CLIENT = 100
HEAD = (
    b"POST /v1/reason HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n{"
)


@dataclass
class Dripper:
    """A socket that sent a request head and drips its body, one byte at a time."""

    source: str
    sock: socket.socket
    opened: float
    closed: float | None = None
    received: bytes = b""

    @property
    def status(self) -> int | None:
        head = self.received.split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 else None


@dataclass
class Probes:
    """/healthz and /readyz, asked in turn on a new connection each time, as an orchestrator asks."""

    url: str
    results: list[tuple[float, str, float, int | str]] = field(default_factory=list)
    """(started, path, seconds, status or error)"""
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        paths = ["/healthz", "/readyz"]
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, timeout=2, limits=fresh) as http:
            while not self.stop.is_set():
                path = paths[len(self.results) % 2]
                started = time.monotonic()
                try:
                    outcome: int | str = http.get(path).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.results.append((started, path, time.monotonic() - started, outcome))
                self.stop.wait(0.1)


@pytest.fixture
def open_files() -> Iterator[None]:
    """This process holds 1,100 sockets and more: the soft limit raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_open_files_limit() >= 2_000, "this test needs 2,000 open files"
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def error_code(dripper: Dripper) -> str:
    return str(json.loads(dripper.received.partition(b"\r\n\r\n")[2])["error"]["code"])


def drip(port: int, sources: list[str]) -> list[Dripper]:
    """One socket per source address: connect, send the head and the body's first byte."""
    drippers = []
    for source in sources:
        sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        sock.sendall(HEAD)
        sock.setblocking(False)
        drippers.append(Dripper(source, sock, time.monotonic()))
    return drippers


def pump(drippers: list[Dripper], timeout_s: float, closed: int | None = None) -> None:
    """Drip a byte into every open socket every 0.5 s and read what the server sends, until it
    has closed ``closed`` of them (all by default) or the time is up."""
    selector = selectors.DefaultSelector()
    for dripper in drippers:
        if dripper.closed is None:
            selector.register(dripper.sock, selectors.EVENT_READ, dripper)
    enough = len(drippers) if closed is None else closed
    deadline = time.monotonic() + timeout_s
    next_drip = 0.0
    while sum(d.closed is not None for d in drippers) < enough and time.monotonic() < deadline:
        if time.monotonic() >= next_drip:
            next_drip = time.monotonic() + 0.5
            for dripper in drippers:
                if dripper.closed is None:
                    with contextlib.suppress(OSError):  # closed by the server: the read sees it
                        dripper.sock.send(b" ")
        for key, _ in selector.select(timeout=0.1):
            dripper = key.data
            try:
                chunk = dripper.sock.recv(4096)
            except OSError:
                chunk = b""
            dripper.received += chunk
            if not chunk:
                dripper.closed = time.monotonic()
                selector.unregister(dripper.sock)
    selector.close()


def test_dripping_bodies_are_cut_by_the_deadline_and_health_probes_answer_throughout(
    stub: StubBackend, tmp_path: Path, open_files: None
) -> None:
    """150 sockets from 127.0.0.2 (cap 100 per address), then 950 from ten more addresses (the
    server's cap is 1000): all drip. The probes start once the refused sockets have their 503,
    so the server has seen every socket (taking in a burst of 1,100 connections costs it about
    half a second, whatever it does with them), and run until every socket is closed."""
    served = Served(
        stub,
        tmp_path / "data",
        request_body_timeout_s=BODY_TIMEOUT_S,
        max_connections=1000,
        max_connections_per_client=PER_CLIENT,
    )
    probes = Probes(served.url)
    prober = threading.Thread(target=probes.run)
    drippers: list[Dripper] = []
    try:
        greedy = ["127.0.0.2"] * 150  # 50 beyond its own cap, while the server has room
        many = [f"127.0.0.{3 + i % 10}" for i in range(950)]  # 900 fill the server, 50 beyond
        drippers = drip(served.port, greedy) + drip(served.port, many)
        pump(drippers, timeout_s=10, closed=100)  # the refused: the server has seen every socket
        full_from = time.monotonic()
        prober.start()
        with httpx.Client(base_url=served.url, timeout=2) as http:
            refused = http.post("/v1/reason", json={"question": "Q?"})
            healthy = http.get("/healthz")
        pump(drippers, timeout_s=BODY_TIMEOUT_S + 15)
        probes.stop.set()
        prober.join()
    finally:
        probes.stop.set()
        for dripper in drippers:
            dripper.sock.close()
        served.kill()

    for started, path, seconds, outcome in probes.results:
        assert outcome == 200, (path, outcome, started - full_from)
        assert seconds < 1.0, (path, seconds, started - full_from)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", "the cap is full"
    assert healthy.status_code == 200

    assert len(drippers) == 1100
    assert all(d.closed is not None for d in drippers), "every dripping socket is closed by the server"
    by_status = {status: [d for d in drippers if d.status == status] for status in (408, 503)}
    assert len(by_status[408]) + len(by_status[503]) == 1100, "each got a response before the close"
    assert sum(d.source == "127.0.0.2" for d in by_status[408]) == PER_CLIENT, "the per-client cap"
    assert sum(d.source == "127.0.0.2" for d in by_status[503]) == 50
    assert len(by_status[408]) == 1000, "the global cap"
    for dripper in by_status[503]:
        assert b"retry-after: 1" in dripper.received.lower()
        assert error_code(dripper) == "too_many_connections"
    for dripper in by_status[408]:
        assert dripper.closed is not None
        # uvloop's timers run on libuv's millisecond clock and may fire a little early
        lifetime = dripper.closed - dripper.opened
        assert BODY_TIMEOUT_S - 0.05 < lifetime < BODY_TIMEOUT_S + 3, "cut by the deadline"
        assert error_code(dripper) == "request_timeout"
    first_cut = min(d.closed for d in by_status[408] if d.closed is not None)
    while_full = [r for r in probes.results if r[0] + r[2] <= first_cut]
    assert {path for _, path, _, _ in while_full} == {"/healthz", "/readyz"}, "probed while full"
