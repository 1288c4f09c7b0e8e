"""`make bench`: the engine and the service measured side by side with a plain-asyncio
reference, against the scripted backend in its own process.

Every figure is a ratio or a distribution from the same run, since absolute times on a shared
machine drift. Prints a table, writes results.json and PNG plots to tests/bench/results/. The
sections live in orchestration.py (2-7), scheduling.py (8-10), durability.py (11-12),
replicas.py (13), observability.py (14), langgraph_server.py (15) and tools.py (16-17).
"""

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from tests.bench.durability import durability, restart
from tests.bench.harness import RESULTS
from tests.bench.langgraph_server import langgraph_server
from tests.bench.observability import observability
from tests.bench.orchestration import attribution, fanout, growth, overhead, streaming, throughput
from tests.bench.replicas import replicas
from tests.bench.report import plots, print_table
from tests.bench.scheduling import chain, dependency_answers, streamed_plan
from tests.bench.tools import tool_call_cost, tool_chain


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"}
    started = time.perf_counter()
    steps = (overhead, fanout, throughput, streaming, growth, attribution, chain, streamed_plan,
             dependency_answers, durability, restart, observability, replicas, langgraph_server,
             tool_chain, tool_call_cost)  # fmt: skip
    for step in steps:
        t0 = time.perf_counter()
        step(report)
        print(f"[{step.__name__} done in {time.perf_counter() - t0:.0f} s]", flush=True)
    report["duration_s"] = time.perf_counter() - started
    print_table(report)
    plots(report)
    (RESULTS / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {RESULTS / 'results.json'}, {RESULTS / 'bench.png'}, {RESULTS / 'replicas.png'} "
          f"({report['duration_s']:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
