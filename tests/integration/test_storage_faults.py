"""Storage faults through the real HTTP app, while runs are in flight: DATA_DIR fills up (a
8 MB tmpfs where the suite can mount one, and always a store whose writes fail the way a
full disk makes them fail), or another process holds the database locked past the store's
busy timeout.

What must hold: runs in flight end and whoever waits gets the result; cancel still works; new
submissions answer 503 ``storage_unavailable`` in the error shape; /readyz reports the fault;
/healthz never waits on storage; once the fault clears every admitted run is stored with its
final status, its result and its terminal event last, and no run is left running.
"""

import logging
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from api.storage.sqlite_connections import BUSY_TIMEOUT_MS
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend
from tests.support.fault_scenario import (
    LATENCY_S,
    OPTIONS,
    ask,
    check_stored,
    not_ready,
    ride_out,
    storage_error,
    stored_as,
    stored_statuses,
)
from tests.support.runs import until
from tests.support.storage_faults import LOCK_HOLD_S, LockedDatabase, SimulatedFullDisk, TmpfsFullDisk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs, mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the simulated full disk runs instead)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
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
