"""What every bench drives: the scripted backend, the service and the floor, each in a process of
its own, the engine in-process, a question, clients that keep asking it, and the figures read
from /proc."""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

from api.backend.embedded import free_port
from graph import Models, ModelSpec, RunContext, TiktokenCounter, build_graph, execute, openai_chat_model
from tests.stub_backend import MODEL_ENV, model_name

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Compare the climates of Norway and Spain and explain why they differ."
RESULTS = ROOT / "tests" / "bench" / "results"
QUICK = os.environ.get("BENCH_QUICK") == "1"
"""``BENCH_QUICK=1``: fewer rounds and levels, for a quick look."""


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
    """User + system CPU seconds of a process (0 if it is gone or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
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


@contextmanager
def reference_service(backend: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    args = ["-m", "tests.bench.reference", "--backend", f"{backend}/v1", "--port", str(port)]
    with process(args, f"http://127.0.0.1:{port}/") as p:
        yield f"http://127.0.0.1:{port}", p


def calls(backend: str, full: bool = False) -> list[dict[str, Any]]:
    """The stub's record of calls; ``full`` gives whole prompts (else their first 400 characters)."""
    rows: list[dict[str, Any]] = httpx.get(f"{backend}/_calls", params={"full": "1"} if full else None).json()
    return rows


def reset(backend: str) -> None:
    httpx.post(f"{backend}/_reset")


def critical_path(rows: list[dict[str, Any]]) -> float:
    """Backend time on the critical path: each stage's longest call, summed over the stages."""
    total = 0.0
    for role in ("planner", "worker", "critic", "synthesizer"):
        spans = [r["finished"] - r["started"] for r in rows if r["role"] == role]
        if role == "worker":
            total += max(spans, default=0.0)
        else:
            total += sum(spans)
    return total


def engine(backend: str, stream: bool = False, checkpointer: Any = None) -> Any:
    def spec(role: str) -> ModelSpec:
        name = model_name(role)
        chat = openai_chat_model(model=name, base_url=f"{backend}/v1", api_key="unused", timeout_s=60)
        # Not streamed, like the reference: streaming is measured on its own (5, 9).
        return ModelSpec(chat=chat, name=name, stream=stream)

    return build_graph(
        Models(
            planner=spec("planner"),
            worker=spec("worker"),
            critic=spec("critic"),
            synthesizer=spec("synthesizer"),
        ),
        checkpointer=checkpointer,
    )


async def engine_run(
    graph: Any, subtasks: int, concurrency: int = 64, max_revisions: int = 1
) -> dict[str, Any]:
    async def ignore(name: str, data: dict[str, Any]) -> None:
        return None

    ctx = RunContext(
        max_subtasks=subtasks,
        max_revisions=max_revisions,
        max_output_tokens=512,
        max_concurrency=concurrency,
    )
    count = await TiktokenCounter().count(QUESTION)
    result: dict[str, Any] = dict(
        await execute(
            graph,
            QUESTION,
            ctx,
            run_id="bench",
            question_count=count,
            emit=ignore,
        )
    )
    assert result["status"] == "completed", result["error"]
    return result
