"""What every bench drives: the scripted backend and the service, each in a process of its own,
a question, clients that keep asking it, and the figures read from /proc."""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx

from api.backend.embedded import free_port
from tests.stub_backend import MODEL_ENV

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Compare the climates of Norway and Spain and explain why they differ."


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(
    args: list[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def stub(latency: float, *options: str) -> Iterator[str]:
    """The stub in its own process; ``options`` are more of its flags (``--plan-json``, …)."""
    port = free_port()
    args = ["-m", "tests.stub_backend", "--port", str(port), "--latency", str(latency), "--subtasks", "64"]
    with process([*args, *options], f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def service(
    backend: str, data_dir: str | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``data_dir``: a DATA_DIR that outlives the process (else a temporary one of its own)."""
    port = free_port()
    owned = data_dir is None
    data = tempfile.TemporaryDirectory(prefix="reasoner-bench-") if owned else nullcontext(data_dir)
    settings = {
        "LLM_BASE_URL": f"{backend}/v1",
        **MODEL_ENV,
        "LLM_API_KEY": "unused",
        "LOG_LEVEL": "warning",
        "SUBTASKS_LIMIT": "64",
        "MAX_CONCURRENCY": "64",
        "MAX_ACTIVE_RUNS": "64",
        "LLM_STREAM": "false",
        **env,
    }
    with (
        data as directory,
        process(
            ["-m", "api.cli", "serve", "--port", str(port)],
            f"http://127.0.0.1:{port}/healthz",
            {**settings, "DATA_DIR": directory},
        ) as p,
    ):
        yield f"http://127.0.0.1:{port}", p


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


Ask = Callable[[httpx.AsyncClient], Awaitable[None]]
"""One question asked of a server, its answer checked."""


async def drive_with(url: str, ask: Ask, clients: int, runs: int) -> tuple[list[float], float]:
    """``runs`` questions asked by ``clients`` at once: each one's seconds, and the wall time."""
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        latencies: list[float] = []
        queue = iter(range(runs))

        async def client() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                await ask(http)
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return latencies, time.perf_counter() - t0


async def drive(url: str, path: str, clients: int, runs: int) -> tuple[list[float], float]:
    """``drive_with`` POSTing the question of 4 sub-questions to ``path``."""

    async def ask(http: httpx.AsyncClient) -> None:
        response = await http.post(path, json={"question": QUESTION, "max_subtasks": 4})
        assert response.status_code == 200, response.text

    return await drive_with(url, ask, clients, runs)
