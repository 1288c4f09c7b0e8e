"""reasoner beside LangGraph's own server (`langgraph dev`: langgraph.json, the same graph, its
in-memory runtime) on the same zero-latency stub, questions of 4 sub-questions: throughput and
latency at 1, 8 and 32 clients (blocks alternate between the two, with the load average per
block, ratios paired block by block), CPU per run, and memory (RSS) after all the runs.
Part of `make bench` (its section 15); needs `make install-langgraph`.

    .venv/bin/python -m tests.bench.langgraph_server
"""

import asyncio
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from api.backend.embedded import free_port
from tests.bench.harness import QUESTION, ROOT, drive_with, proc_cpu_s, service, stub, wait_http
from tests.stub_backend import MODEL_ENV

LANGGRAPH = ROOT / ".venv-langgraph" / "bin" / "langgraph"
OFFLINE = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
}
LEVELS = (1, 8, 32)
ROUNDS = 3


@contextmanager
def langgraph_dev(backend: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not LANGGRAPH.exists():
        raise SystemExit("the LangGraph CLI is not installed: run `make install-langgraph`")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "LANGSMITH_", "LANGGRAPH_"))}
    env |= {"LLM_BASE_URL": f"{backend}/v1", "LLM_API_KEY": "unused", **MODEL_ENV, **OFFLINE,
            "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="reasoner-bench-") as work:
        proc = subprocess.Popen(
            [LANGGRAPH, "dev", "--no-browser", "--no-reload", "--port", str(port),
             "--config", ROOT / "langgraph.json"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/ok", timeout=120)
            yield f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def ask_reasoner(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/reason", json={"question": QUESTION, "max_subtasks": 4})
    assert response.status_code == 200, response.text


async def ask_langgraph(http: httpx.AsyncClient) -> None:
    body = {"assistant_id": "reasoner", "input": {"question": QUESTION}, "context": {"max_subtasks": 4}}
    response = await http.post("/runs/wait", json=body)
    assert response.status_code == 200 and response.json().get("answer"), response.text


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (`langgraph dev` serves from a child)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if proc.name == str(pid) or int(fields[1]) == pid:
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def langgraph_server(report: dict[str, Any]) -> None:
    """Both servers up at once, driven in alternate blocks at each level; the figures go in
    ``report["langgraph_server"]``."""
    rows: list[dict[str, Any]] = []
    with stub(0.0) as backend, service(backend) as (svc_url, svc), langgraph_dev(backend) as (lg_url, lg):
        contenders = {"reasoner": (svc_url, svc, ask_reasoner), "langgraph dev": (lg_url, lg, ask_langgraph)}
        for url, _, ask in contenders.values():
            asyncio.run(drive_with(url, ask, 4, 20))  # warm-up
        for clients in LEVELS:
            runs = max(30, clients * 6)
            blocks: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
            for _ in range(ROUNDS):
                for name, (url, proc, ask) in contenders.items():
                    cpu0 = proc_cpu_s(proc.pid)
                    latencies, wall = asyncio.run(drive_with(url, ask, clients, runs))
                    cpu_ms = (proc_cpu_s(proc.pid) - cpu0) / runs * 1000
                    blocks[name].append((runs / wall, statistics.median(latencies) * 1000, cpu_ms))
                    print(f"  {name:>14} {clients:>3} clients: {runs / wall:6.1f} runs/s, "
                          f"p50 {blocks[name][-1][1]:7.1f} ms, CPU {cpu_ms:5.1f} ms per run "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip
            ours, theirs = blocks["reasoner"], blocks["langgraph dev"]
            rows.append({
                "clients": clients,
                "runs_per_s": {n: statistics.median(b[0] for b in blocks[n]) for n in contenders},
                "p50_ms": {n: statistics.median(b[1] for b in blocks[n]) for n in contenders},
                "cpu_ms_per_run": {n: statistics.median(b[2] for b in blocks[n]) for n in contenders},
                "throughput_ratio": statistics.median(a[0] / b[0] for a, b in zip(ours, theirs, strict=True)),
                "latency_ratio": statistics.median(a[1] / b[1] for a, b in zip(ours, theirs, strict=True)),
            })  # fmt: skip
        done = 20 + sum(max(30, c * 6) for c in LEVELS) * ROUNDS
        memory = {name: rss_mb(proc.pid) for name, (_, proc, _) in contenders.items()}
    report["langgraph_server"] = {"levels": rows, "runs_each": done, "rss_mb": memory}


def print_langgraph_server(report: dict[str, Any]) -> None:
    figures = report["langgraph_server"]
    print("\n15. reasoner vs LangGraph's own server (`langgraph dev`, in-memory), zero-latency stub, "
          "4 sub-questions; ratios paired by block")  # fmt: skip
    for row in figures["levels"]:
        print(f"   {row['clients']:>3} clients: runs/s {row['runs_per_s']['reasoner']:.1f} vs "
              f"{row['runs_per_s']['langgraph dev']:.1f} ({row['throughput_ratio']:.2f}x), p50 "
              f"{row['p50_ms']['reasoner']:.0f} vs {row['p50_ms']['langgraph dev']:.0f} ms "
              f"({row['latency_ratio']:.2f}x), CPU per run {row['cpu_ms_per_run']['reasoner']:.1f} vs "
              f"{row['cpu_ms_per_run']['langgraph dev']:.1f} ms")  # fmt: skip
    memory = figures["rss_mb"]
    print(f"   RSS after {figures['runs_each']} runs each: reasoner {memory['reasoner']:.0f} MB, "
          f"langgraph dev {memory['langgraph dev']:.0f} MB "
          f"({memory['reasoner'] / memory['langgraph dev']:.2f}x)")  # fmt: skip


def main() -> None:
    report: dict[str, Any] = {}
    langgraph_server(report)
    print_langgraph_server(report)


if __name__ == "__main__":
    main()
