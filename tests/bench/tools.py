"""Tools in ``make bench``: a chain of four arithmetic steps, each on the one before, answered
with and without the calculator against the scripted backend (100 ms per call): whether the
last step is exact (scripted replies, so this checks the mechanics, not a model), the worker
calls and tokens it took, and the wall time per task. Then what one tool call costs: the
calculator, and an MCP server's tool over stdio and over streamable HTTP (tests/support/mcp_server.py)."""

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from api.backend.mcp_client import ServerEntry, open_mcp_servers
from graph import RunContext, TiktokenCounter, execute
from graph.tools import CALCULATOR, Tools, invoke
from tests.bench.harness import QUICK, engine, stub
from tests.support.mcp_server import over_http

LATENCY_S = 0.1
CHAIN = [
    {"id": "t1", "question": "calculate: 1234 * 5678", "depends_on": []},
    {"id": "t2", "question": "calculate: {t1} - 987654", "depends_on": ["t1"]},
    {"id": "t3", "question": "calculate: {t2} / 16", "depends_on": ["t2"]},
    {"id": "t4", "question": "calculate: 7.5% of {t3}", "depends_on": ["t3"]},
]
EXACT = "The result is 28214.053125."
"""1234 * 5678 = 7006652; - 987654 = 6018998; / 16 = 376187.375; 7.5% of that."""
QUESTION = "What is 7.5% of ((1234 * 5678 - 987654) / 16)?"
MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"


def tool_chain(report: dict[str, Any]) -> None:
    runs = 2 if QUICK else 10
    modes = {"without tools": {}, "with the calculator": {"calculator": CALCULATOR}}
    table = []
    with stub(LATENCY_S, "--plan-json", json.dumps(CHAIN)) as backend:
        graph = engine(backend)
        timed = asyncio.run(_runs(graph, modes, runs))
        for mode, (walls, results) in timed.items():
            workers = [r for r in results[-1]["calls"] if r["node"] == "worker"]
            last = results[-1]["subanswers"][-1]["answer"]
            table.append(
                {
                    "mode": mode,
                    "exact": last == EXACT,
                    "last_answer": last,
                    "worker_calls_per_task": len(workers) / len(CHAIN),
                    "worker_tokens_per_task": sum(
                        r["prompt_tokens"] + r["completion_tokens"] for r in workers
                    )
                    / len(CHAIN),
                    "wall_ms_per_task": statistics.median(walls) * 1000 / len(CHAIN),
                }
            )
    report["tool_chain"] = {"latency_s": LATENCY_S, "runs": runs, "table": table}


async def _runs(
    graph: Any, modes: dict[str, dict[str, Any]], runs: int
) -> dict[str, tuple[list[float], list[dict[str, Any]]]]:
    """Each mode's wall times and results, the modes alternating run by run."""
    timed: dict[str, tuple[list[float], list[dict[str, Any]]]] = {mode: ([], []) for mode in modes}
    for _ in range(runs):
        for mode, tools in modes.items():
            t0 = time.perf_counter()
            result = await _run(graph, tools)
            timed[mode][0].append(time.perf_counter() - t0)
            timed[mode][1].append(result)
    return timed


async def _run(graph: Any, tools: dict[str, Any]) -> dict[str, Any]:
    async def ignore(name: str, data: dict[str, Any]) -> None:
        return None

    ctx = RunContext(max_subtasks=4, max_revisions=0, tools=tools)
    count = await TiktokenCounter().count(QUESTION)
    result = await execute(graph, QUESTION, ctx, run_id="bench-tools", question_count=count, emit=ignore)
    assert result["status"] == "completed", result["error"]
    return dict(result)


def print_tool_chain(report: dict[str, Any]) -> None:
    t = report["tool_chain"]
    print(f"\n16. a 4-step arithmetic chain, scripted backend at {t['latency_s']} s per call, "
          f"median of {t['runs']} runs:")  # fmt: skip
    print("    the last step exact; worker calls, worker tokens and wall ms per task")
    print(f"{'mode':>22}{'exact':>7}{'calls':>7}{'tokens':>8}{'ms':>8}  last answer")
    for r in t["table"]:
        exact = "yes" if r["exact"] else "no"
        print(f"{r['mode']:>22}{exact:>7}{r['worker_calls_per_task']:>7.1f}{r['worker_tokens_per_task']:>8.0f}"
              f"{r['wall_ms_per_task']:>8.0f}  {r['last_answer'][:40]}")  # fmt: skip


def tool_call_cost(report: dict[str, Any]) -> None:
    """Median wall time of one tool call (``graph.tools.invoke``, as a worker makes it)."""
    calls = 50 if QUICK else 500
    with over_http() as url:
        servers = {
            "stdio": ServerEntry(command=sys.executable, args=[str(MCP_SERVER)]),
            "http": ServerEntry(url=url),
        }
        report["tool_call_cost"] = {"calls": calls, **asyncio.run(_time_calls(servers, calls))}


async def _time_calls(servers: dict[str, ServerEntry], calls: int) -> dict[str, float]:
    async def median_ms(tools: Tools, name: str, arguments: dict[str, Any]) -> float:
        times = []
        for _ in range(calls):
            outcome = await invoke(tools, name, arguments, timeout_s=10, max_chars=1000)
            assert outcome.error is None, outcome.error
            times.append(outcome.duration_ms)
        return statistics.median(times)

    figures = {
        "calculator_ms": await median_ms({"calculator": CALCULATOR}, "calculator", {"expression": "2+40"})
    }
    for transport, entry in servers.items():
        async with open_mcp_servers({transport: entry}, timeout_s=30) as mcp:
            figures[f"mcp_{transport}_ms"] = await median_ms(mcp.tools, "add", {"a": 2, "b": 40})
    return figures


def print_tool_call_cost(report: dict[str, Any]) -> None:
    c = report["tool_call_cost"]
    print(f"\n17. one tool call, median of {c['calls']}: the calculator {c['calculator_ms']:.2f} ms,")
    stdio, http = c["mcp_stdio_ms"], c["mcp_http_ms"]
    print(f"    an MCP server's over stdio {stdio:.2f} ms, over streamable HTTP {http:.2f} ms")
