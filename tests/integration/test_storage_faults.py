"""Storage faults through the real HTTP app, while runs are in flight: DATA_DIR fills up (a
256 KB tmpfs where the suite can mount one, and always a store whose writes fail the way a
full disk makes them fail), or another process holds the database locked past the store's
busy timeout.

What must hold: runs in flight end and whoever waits gets the result; cancel still works; new
submissions answer 503 ``storage_unavailable`` in the error shape; /readyz reports the fault;
/healthz never waits on storage; once the fault clears every admitted run is stored with its
final status, its result and its terminal event last, and no run is left running.
"""

import errno
import gc
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest

import api.storage.factory
from api.settings import Settings
from api.storage.sqlite import SQLiteRunStore
from api.storage.sqlite_connections import BUSY_TIMEOUT_MS
from graph.events import TERMINAL_EVENTS
from tests.conftest import REPORT, Service, stub_backend
from tests.stub_backend import Fault, StubBackend
from tests.support.sse import frames

T = TypeVar("T")

LATENCY_S = 0.4
"""Per model call: a run (planner, workers, critic, synthesizer) is in flight for ~1.6 s."""
OPTIONS = {"max_subtasks": 2, "max_revisions": 0}
QUESTIONS = {
    "background": "Started in the background?",
    "waiting": "Waited for?",
    "streamed": "Streamed?",
    "cancelled": "Cancel me?",
}
"""The runs in flight when the fault starts, by how they are followed."""
FINAL = {"background": "completed", "waiting": "completed", "streamed": "completed", "cancelled": "cancelled"}
TERMINAL_EVENT = {"completed": "run.completed", "cancelled": "run.cancelled"}
HEALTHZ_MAX_S = 0.1
LOCK_HOLD_S = BUSY_TIMEOUT_MS / 1000 + 3
"""Longer than the busy timeout, so writes blocked by the lock fail and are retried."""

Frames = list[tuple[int | None, str | None, Any]]


def until(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def disk_usage(data_dir: Path) -> str:
    files = ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in sorted(data_dir.iterdir()))
    return f"{os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize // 1024} KB free; {files}"


class StorageFault(Protocol):
    def start(self) -> None:
        """Make writes fail from now on."""
        ...

    def holding(self) -> bool:
        """The fault is still on."""
        ...

    def clear(self) -> None:
        """End the fault (idempotent)."""
        ...


# A full disk ------------------------------------------------------------------------------------


class TmpfsFullDisk:
    """DATA_DIR is a 256 KB tmpfs; the fault is a filler file that takes all the space left."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.filler = data_dir / "filler"

    def start(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        assert os.statvfs(self.data_dir).f_bavail == 0

    def holding(self) -> bool:
        return self.filler.exists()

    def clear(self) -> None:
        self.filler.unlink(missing_ok=True)


class SimulatedFullDisk:
    """The app's store fails every write as a full disk makes SQLite fail it."""

    def __init__(self, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data_dir = data_dir
        full = self._full = threading.Event()

        class FullDiskStore(SQLiteRunStore):
            def _atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
                if full.is_set():
                    raise sqlite3.OperationalError("database or disk is full")
                return super()._atomically(work)

        monkeypatch.setattr(api.storage.factory, "SQLiteRunStore", FullDiskStore)

    def start(self) -> None:
        self._full.set()

    def holding(self) -> bool:
        return self._full.is_set()

    def clear(self) -> None:
        self._full.clear()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KB tmpfs, mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the simulated full disk runs instead)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()} (the simulated full disk runs instead)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(params=["tmpfs", "simulated"])
def full_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TmpfsFullDisk | SimulatedFullDisk]:
    disk: TmpfsFullDisk | SimulatedFullDisk
    if request.param == "tmpfs":
        disk = TmpfsFullDisk(request.getfixturevalue("tmpfs"))
    else:
        disk = SimulatedFullDisk(tmp_path / "data", monkeypatch)
    try:
        yield disk
    finally:
        disk.clear()


# A locked database ------------------------------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
db.close()
"""


class LockedDatabase:
    """Another process holds the database in ``BEGIN EXCLUSIVE`` for ``hold_s``, then commits."""

    def __init__(self, path: Path, hold_s: float) -> None:
        self.path = path
        self.hold_s = hold_s
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(self.path), str(self.hold_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def holding(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def clear(self) -> None:
        """Wait for the lock holder to commit and exit."""
        if self.process is not None:
            assert self.process.wait(timeout=self.hold_s + 10) == 0

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()


# /healthz latency --------------------------------------------------------------------------------


class HealthSampler(threading.Thread):
    """GET /healthz over and over until stopped, timing each answer.

    The service shares this process with the tests, the stub and their clients, and a full
    garbage collection of it stops every thread for up to ~150 ms; the time such pauses overlap
    an answer is not counted against the service (``latencies``; ``raw`` has them in)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float]] = []
        self.gc_pauses: list[tuple[float, float]] = []
        self.statuses: list[int] = []
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._gc_began = 0.0

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_began = now
        else:
            self.gc_pauses.append((self._gc_began, now))

    def start(self) -> None:
        gc.callbacks.append(self._gc)
        super().start()

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=30) as http:
                http.get("/healthz")  # the connection is open before the first sample
                while not self._done.is_set():
                    began = time.perf_counter()
                    status = http.get("/healthz").status_code
                    self.samples.append((began, time.perf_counter()))
                    self.statuses.append(status)
                    self._done.wait(0.02)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)
        gc.callbacks.remove(self._gc)
        assert not self.is_alive()
        assert self.error is None, f"/healthz failed: {self.error!r}"

    @property
    def raw(self) -> list[float]:
        return [end - began for began, end in self.samples]

    @property
    def latencies(self) -> list[float]:
        def paused(began: float, end: float) -> float:
            return sum(max(0.0, min(end, e) - max(began, s)) for s, e in self.gc_pauses)

        return [end - began - paused(began, end) for began, end in self.samples]


# The scenario -----------------------------------------------------------------------------------


def ask(url: str, question: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=20) as http:
        return http.post("/v1/reason", json={"question": question, **OPTIONS})


def stream(url: str, question: str) -> Frames:
    with (
        httpx.Client(base_url=url, timeout=20) as http,
        http.stream(
            "POST",
            "/v1/reason",
            json={"question": question, **OPTIONS},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        return [(f.id, f.event, f.data) for f in frames(response) if not f.comment]


def replay(http: httpx.Client, run_id: str) -> Frames:
    with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200
        return [(f.id, f.event, f.data) for f in frames(response) if not f.comment]


def stored_statuses(http: httpx.Client) -> dict[str, str]:
    """Run id to status as the store has it (the list is read from storage only)."""
    return {r["run_id"]: r["status"] for r in http.get("/v1/runs", params={"limit": 100}).json()["data"]}


def all_running(http: httpx.Client) -> dict[str, str] | None:
    """The runs of QUESTIONS by name, once the store has them all running."""
    runs = {r["question"]: r for r in http.get("/v1/runs", params={"limit": 100}).json()["data"]}
    if all(runs.get(q, {}).get("status") == "running" for q in QUESTIONS.values()):
        return {name: runs[q]["run_id"] for name, q in QUESTIONS.items()}
    return None


def storage_error(response: httpx.Response) -> None:
    """A 503 storage_unavailable in the one error shape."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "server_error",
        "param": None,
        "code": "storage_unavailable",
    }
    assert error["message"]


def ended(http: httpx.Client, run_id: str) -> dict[str, Any] | None:
    """The run as the API shows it, once it has ended."""
    view: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()
    return view if view["status"] not in ("queued", "running") else None


def not_ready(http: httpx.Client) -> httpx.Response | None:
    response = http.get("/readyz")
    return response if response.status_code != 200 else None


def finished_after(result: dict[str, Any], moment: datetime) -> bool:
    return max(datetime.fromisoformat(c["finished_at"]) for c in result["calls"]) > moment


def stored_as(http: httpx.Client, run_id: str, status: str, data_dir: Path, what: str) -> None:
    """The store has the run with this status (its end is committed) within 5 s (the store
    retries a failed write after at most 2 s)."""
    try:
        until(lambda: stored_statuses(http).get(run_id) == status, 5, f"{run_id} to be stored")
    except AssertionError:
        raise AssertionError(
            f"the end of {what} ({run_id}) was not committed within 5 s: stored "
            f"{stored_statuses(http).get(run_id)!r}, /readyz {http.get('/readyz').status_code}; "
            f"DATA_DIR: {disk_usage(data_dir)}"
        ) from None


def ride_out(
    service: Service, stub: StubBackend, fault: StorageFault, *, report_within_s: float, what: str
) -> dict[str, str]:
    """Runs in flight when ``fault`` starts; what the service answers during it; what is stored
    once it clears. Returns the status of every run admitted, by run id."""
    stub.options.latency_s = LATENCY_S
    stub.options.subtasks = 2
    stub.inject("planner", Fault(status=200, hang_s=30, match=QUESTIONS["cancelled"]))
    with httpx.Client(base_url=service.url, timeout=20) as http, ThreadPoolExecutor(2) as pool:
        for name in ("background", "cancelled"):
            started = http.post("/v1/runs", json={"question": QUESTIONS[name], **OPTIONS})
            assert started.status_code == 202, started.text
        waiting = pool.submit(ask, service.url, QUESTIONS["waiting"])
        streamed = pool.submit(stream, service.url, QUESTIONS["streamed"])
        ids = until(lambda: all_running(http), 10, "the runs to be stored as running")

        fault.start()
        fault_started = datetime.now(UTC)
        health = HealthSampler(service.url)
        health.start()
        try:
            # Runs in flight end, and whoever follows them gets the end, while the fault holds.
            cancelled = http.post(f"/v1/runs/{ids['cancelled']}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"

            answered = waiting.result(timeout=20)
            assert answered.status_code == 200, answered.text
            result = answered.json()
            assert result["status"] == "completed"
            assert result["answer"]
            assert finished_after(result, fault_started), "the run was not in flight during the fault"

            live_frames = streamed.result(timeout=20)
            assert live_frames[-1][1] == "run.completed"
            assert finished_after(live_frames[-1][2]["result"], fault_started)

            background = until(lambda: ended(http, ids["background"]), 20, "the background run to end")
            assert background["status"] == "completed"
            assert background["result"]["answer"]

            # The fault is reported, and new runs are refused with 503 storage_unavailable. (Polled
            # gently: while the store still looks healthy, each /readyz pings the model backend
            # and that costs the event loop tens of milliseconds, which /healthz would measure.)
            refused = until(lambda: not_ready(http), report_within_s, "/readyz to report the fault", 0.25)
            storage_error(refused)
            for path in ("/v1/runs", "/v1/reason"):
                storage_error(http.post(path, json={"question": "Refused?", **OPTIONS}))
            assert http.get(f"/v1/runs/{ids['waiting']}").json()["result"] == result

            # Still faulty: the runs' ends are resolved. (A small write can still fit in pages
            # SQLite has freed, a finished run's deleted checkpoints for one: stored is either
            # still running or already final, never anything else.)
            assert fault.holding()
            stored = stored_statuses(http)
            for name, status in FINAL.items():
                assert stored[ids[name]] in ("running", status), (name, stored[ids[name]])
        finally:
            fault.clear()
            health.stop()

        # /healthz never waited on storage.
        assert len(health.samples) >= 10
        assert set(health.statuses) == {200}
        slowest = max(health.latencies)
        REPORT.append(
            f"storage faults, /healthz during {what}: {len(health.samples)} answers, slowest "
            f"{slowest * 1000:.1f} ms ({max(health.raw) * 1000:.1f} ms with GC pauses of the test process)"
        )
        assert slowest < HEALTHZ_MAX_S, f"/healthz took {slowest:.3f} s during {what}"

        # Once the fault clears: ready again, and every run's end committed.
        until(lambda: http.get("/readyz").status_code == 200, 15, "/readyz to recover")
        expected = {ids[name]: status for name, status in FINAL.items()}
        until(lambda: stored_statuses(http) == expected, 15, "the runs' ends to be committed")

        # Through the API: results, and the stored events end with the terminal event.
        assert http.get(f"/v1/runs/{ids['waiting']}").json()["result"] == result
        for run_id, status in expected.items():
            view = http.get(f"/v1/runs/{run_id}").json()
            assert view["status"] == status
            assert view["result"]["status"] == status
            events = replay(http, run_id)
            assert [e[0] for e in events] == list(range(1, len(events) + 1))
            assert events[0][1] == "run.started"
            assert [e[1] for e in events if e[1] in TERMINAL_EVENTS] == [TERMINAL_EVENT[status]]
            assert events[-1][1] == TERMINAL_EVENT[status]
        assert replay(http, ids["streamed"]) == live_frames
    return expected


def check_stored(path: Path, expected: dict[str, str]) -> None:
    """Read the database file directly, after the service has closed it."""
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        runs = dict(db.execute("SELECT id, status FROM runs").fetchall())
        assert runs == expected, "a run is missing, unfinished, or was stored though refused"
        assert db.execute("SELECT id FROM runs WHERE result IS NULL").fetchall() == []
        for run_id, status in expected.items():
            events = db.execute(
                "SELECT seq, event FROM events WHERE run_id=? ORDER BY seq", (run_id,)
            ).fetchall()
            assert [seq for seq, _ in events] == list(range(1, len(events) + 1))
            assert events[0][1] == "run.started"
            assert events[-1][1] == TERMINAL_EVENT[status]
            assert [name for _, name in events if name in TERMINAL_EVENTS] == [TERMINAL_EVENT[status]]


# The tests ---------------------------------------------------------------------------------------


def test_a_full_data_dir_loses_nothing_admitted(
    stub: StubBackend, settings: Settings, full_disk: TmpfsFullDisk | SimulatedFullDisk
) -> None:
    on_disk = settings.model_copy(update={"data_dir": full_disk.data_dir})
    with Service(on_disk, stub_backend(stub)) as service:
        expected = ride_out(service, stub, full_disk, report_within_s=5, what="a full disk")
    assert not service.thread.is_alive(), "the service did not stop"
    check_stored(full_disk.data_dir / "reasoner.db", expected)


def test_a_locked_database_does_not_block_the_service(stub: StubBackend, settings: Settings) -> None:
    path = settings.data_dir / "reasoner.db"
    lock = LockedDatabase(path, LOCK_HOLD_S)
    try:
        with Service(settings, stub_backend(stub)) as service:
            expected = ride_out(
                service, stub, lock, report_within_s=BUSY_TIMEOUT_MS / 1000 + 2, what="a locked database"
            )
            with httpx.Client(base_url=service.url, timeout=20) as http:
                stub.options.latency_s = 0.0
                after = http.post("/v1/reason", json={"question": "After the lock?", **OPTIONS})
                assert after.status_code == 200, after.text
                assert after.json()["status"] == "completed"
                expected[after.json()["run_id"]] = "completed"
        assert not service.thread.is_alive(), "the service did not stop"
    finally:
        lock.kill()
    check_stored(path, expected)


def test_runs_admitted_after_a_full_disk_clears_are_stored(
    stub: StubBackend, settings: Settings, full_disk: TmpfsFullDisk | SimulatedFullDisk
) -> None:
    """Once the disk has room again, the store keeps storing runs: it does not fill the space
    freed with its own write-ahead log."""
    stub.options.latency_s = LATENCY_S
    on_disk = settings.model_copy(update={"data_dir": full_disk.data_dir})
    expected: dict[str, str] = {}
    with (
        Service(on_disk, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=20) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        waiting = pool.submit(ask, service.url, "In flight when the disk fills?")
        until(lambda: "running" in stored_statuses(http).values(), 10, "the run to be stored as running")
        full_disk.start()
        storage_error(until(lambda: not_ready(http), 5, "/readyz to report the full disk"))
        answered = waiting.result(timeout=20)
        assert answered.status_code == 200, answered.text
        full_disk.clear()
        until(lambda: http.get("/readyz").status_code == 200, 15, "/readyz to recover")
        expected[answered.json()["run_id"]] = "completed"
        stored_as(http, answered.json()["run_id"], "completed", full_disk.data_dir, "the run in flight")

        stub.options.latency_s = 0.0
        for n in range(3):
            after = http.post("/v1/reason", json={"question": f"After the fault, {n}?", **OPTIONS})
            assert after.status_code == 200, f"run {n} after the fault: {after.text}"
            expected[after.json()["run_id"]] = "completed"
            stored_as(
                http, after.json()["run_id"], "completed", full_disk.data_dir, f"run {n} after the fault"
            )
            assert http.get("/readyz").status_code == 200
    assert not service.thread.is_alive(), "the service did not stop"
    check_stored(full_disk.data_dir / "reasoner.db", expected)


def test_readyz_reports_a_full_disk_while_no_run_is_writing(
    stub: StubBackend, settings: Settings, full_disk: TmpfsFullDisk | SimulatedFullDisk
) -> None:
    """Every submission is refused: /readyz must say so, and say ready again on its own (no
    traffic reaches an instance that is not ready) once the disk has room."""
    on_disk = settings.model_copy(update={"data_dir": full_disk.data_dir})
    with (
        Service(on_disk, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=20) as http,
    ):
        assert http.get("/readyz").status_code == 200
        full_disk.start()
        for _ in range(3):
            storage_error(http.post("/v1/runs", json={"question": "Refused?", **OPTIONS}))
        ready = http.get("/readyz")
        assert ready.status_code == 503, f"every submission gets 503 but /readyz answers {ready.text}"
        storage_error(ready)

        full_disk.clear()
        until(lambda: http.get("/readyz").status_code == 200, 10, "/readyz to recover without traffic")
        accepted = http.post("/v1/runs", json={"question": "Accepted?", **OPTIONS})
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        stored_as(http, run_id, "completed", full_disk.data_dir, "the run accepted after the fault")
    assert not service.thread.is_alive(), "the service did not stop"
    check_stored(full_disk.data_dir / "reasoner.db", {run_id: "completed"})


def test_a_write_that_fails_for_lack_of_space_is_logged_with_its_cause(
    stub: StubBackend, settings: Settings, tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite rolls back a transaction that hits a full disk on its own; the store's ROLLBACK
    must not replace the cause ("database or disk is full") with its own error."""
    disk = TmpfsFullDisk(tmpfs)
    with (
        Service(settings.model_copy(update={"data_dir": tmpfs}), stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=20) as http,
    ):
        disk.start()
        try:
            storage_error(http.post("/v1/runs", json={"question": "Refused?", **OPTIONS}))
        finally:
            disk.clear()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("storage unavailable on POST /v1/runs" in m for m in logged), logged
    assert any("database or disk is full" in m for m in logged), logged
