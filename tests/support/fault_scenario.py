"""A service riding out a storage fault (``tests.support.storage_faults``) with runs in flight:
``ride_out`` drives it and checks what the service answers during the fault (/healthz timed all
along by ``HealthSampler``) and what it stores once the fault clears; ``check_stored`` reads the
database file afterwards."""

import gc
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from graph.events import TERMINAL_EVENTS
from tests.conftest import REPORT, Service
from tests.stub_backend import Fault, StubBackend
from tests.support.runs import until
from tests.support.sse import frames
from tests.support.storage_faults import StorageFault, disk_usage

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

Frames = list[tuple[int | None, str | None, Any]]


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
