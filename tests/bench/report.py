"""The table `make bench` prints and the plots it writes."""

from typing import Any

from tests.bench.durability import print_durability, print_restart
from tests.bench.harness import RESULTS
from tests.bench.langgraph_server import print_langgraph_server
from tests.bench.observability import print_observability
from tests.bench.replicas import plot_replicas, print_replicas
from tests.bench.tools import print_tool_call_cost, print_tool_chain

# output --------------------------------------------------------------------------------------


def plots(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ov = report["overhead"]
    xs = [r["subtasks"] for r in ov]
    ax = axes[0][0]
    for key, label in (("reference_ms", "reference (asyncio + openai)"), ("engine_ms", "engine in-process"),
                       ("service_ms", "HTTP service")):  # fmt: skip
        ax.plot(xs, [r[key] for r in ov], marker="o", label=label)
    ax.set(
        xscale="log",
        xlabel="sub-questions",
        ylabel="p50 overhead per run (ms)",
        title="Orchestration overhead",
    )
    ax.legend()
    ax = axes[0][1]
    labels = {
        "reference": "reference",
        "service": "service (SQLite)",
        "postgres": "service (Postgres + Redis)",
    }
    for server, label in labels.items():
        rows = [r for r in report["throughput"] if r["server"] == server]
        ax.plot([r["clients"] for r in rows], [r["runs_per_s"] for r in rows], marker="o", label=label)
    ax.set(
        xscale="log", xlabel="concurrent clients", ylabel="runs/s", title="Throughput, zero-latency backend"
    )
    ax.legend()
    gr = report["growth"]
    ax = axes[1][0]
    ax.plot([r["subtasks"] for r in gr], [r["cpu_ms_per_run"] for r in gr], marker="o")
    ax.set(xlabel="sub-questions", ylabel="CPU ms per run", title="Growth: CPU (engine, in-process)")
    ax = axes[1][1]
    ax.plot([r["subtasks"] for r in gr], [r["peak_kb_per_run"] / 1024 for r in gr], marker="o", color="C2")
    ax.set(
        xlabel="sub-questions", ylabel="peak traced MB per run", title="Growth: memory (engine, in-process)"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "bench.png", dpi=110)
    plot_replicas(report)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}")
    print("\n2. orchestration overhead = wall - backend critical path, p50 ms (ratio to reference)")
    print(f"{'sub-q':>6}{'reference':>11}{'engine':>18}{'service':>18}")
    for r in report["overhead"]:
        print(f"{r['subtasks']:>6}{r['reference_ms']:>11.1f}{r['engine_ms']:>11.1f} ({r['engine_ratio']:.2f})"
              f"{r['service_ms']:>11.1f} ({r['service_ratio']:.2f})")  # fmt: skip
    f = report["fanout"]
    print(f"\n3. fan-out efficiency, 8 sub-questions at {f['latency_s']} s per call: "
          f"parallel {f['parallel']['efficiency']:.2f} ({f['parallel']['wall_s']:.2f} s), "
          f"sequential {f['sequential']['efficiency']:.2f} ({f['sequential']['wall_s']:.2f} s)")  # fmt: skip
    print("\n4. throughput over HTTP, zero-latency backend, 4 sub-questions")
    print(
        "   (blocks alternate reference, service on SQLite, on Postgres + Redis, ...; medians of the blocks;"
    )
    print("   load average per block)")
    print(
        f"{'server':>10}{'clients':>8}{'runs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/run':>12}{'peak MB':>9}"
        "  load"
    )
    for r in report["throughput"]:
        print(f"{r['server']:>10}{r['clients']:>8}{r['runs_per_s']:>9.1f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
              f"{r['cpu_ms_per_run']:>12.1f}{r['peak_mb']:>9.0f}  "
              f"{' '.join(map(str, r['load']))}")  # fmt: skip
    for server in ("service", "postgres"):
        ratios = {r["clients"]: r["paired_ratio"] for r in report["throughput"] if r["server"] == server}
        print(
            f"   {server} / reference runs/s, paired by block: "
            + ", ".join(f"{c} clients {v:.2f}" for c, v in ratios.items())
        )
        report[f"throughput_ratio_{server}"] = ratios
    s = report["streaming"]
    print(f"\n5. streaming delay, backend step done -> client has the event: p50 {s['p50_ms']:.1f} ms, "
          f"p99 {s['p99_ms']:.1f} ms ({s['samples']} events)")  # fmt: skip
    a = report["attribution"]
    print(
        f"\n7. where the overhead goes: one call through the openai SDK {a['sdk_ms_per_call']:.2f} ms, "
        f"through ChatOpenAI {a['chatopenai_ms_per_call']:.2f} ms (zero-latency stub); one engine run "
        f"with an in-memory model (4 sub-questions, 7 calls, no HTTP) {a['engine_ms_per_run_no_http']:.2f} ms"
    )
    c = report["chain"]
    even, slow = c["even"], c["slow_sibling"]
    print(f"\n8. chain t1 -> t2 -> t3 beside 3 independent sub-questions, {c['latency_s']:g} s per call, "
          f"critic once (mean of {c['runs']} runs)")  # fmt: skip
    print(f"   even: wall {even['wall_s']:.2f} s vs critical path {c['critical_path_s']:.1f} s "
          f"(backend's own {even['backend_path_s']:.2f} s): {even['wall_ratio']:.3f} x")  # fmt: skip
    print(f"   one independent at {slow['slow_s']:g} s: wall {slow['wall_s']:.2f} s vs "
          f"max(critical path, planner + {slow['slow_s']:g} s + critic + synthesizer) "
          f"{slow['bound_s']:.1f} s: "
          f"{slow['wall_ratio']:.3f} x; t3 done at {slow['chain_end_s']:.2f} s, the slow call at "
          f"{slow['sibling_end_s']:.2f} s (after the planner's start); the chain ends "
          f"{c['chain_delay_s'] * 1000:+.0f} ms vs the even run")  # fmt: skip
    p = report["streamed_plan"]
    print(f"\n9. streamed planning, {p['tasks']} independent tasks, planner at {p['planner_tokens_per_s']:g} "
          f"tokens/s ({p['planner_stream_s']:.2f} s of plan)")  # fmt: skip
    for mode in ("engine", "service"):
        m = p[mode]
        print(f"   {mode:>7}: first worker call {m['lead_s']:.2f} s before the planner's call ended, "
              f"the rest of the plan streamed in {m['rest_s']:.2f} s: {m['lead_share_p50']:.2f} "
              f"(min {m['lead_share_min']:.2f}); last plan token -> worker call p50 "
              f"{m['delay_p50_ms']:.1f} ms, max {m['delay_max_ms']:.1f} ms "
              f"({m['delays']} tasks)")  # fmt: skip
    print("\n10. dependency answers in worker prompts (chain plan, echoing workers)")
    for mode, d in report["dependency_answers"].items():
        print(f"   {mode:>7}: dependents with exactly their dependencies' answers "
              f"{d['dependents_with_their_answers']}/{d['dependents']}, independents with no other answer "
              f"{d['independents_without_answers']}/{d['independents']}")  # fmt: skip
    print_durability(report)
    print_restart(report)
    print_replicas(report)
    print_observability(report)
    print_langgraph_server(report)
    print_tool_chain(report)
    print_tool_call_cost(report)
    print("\n6. growth per run (engine in-process)")
    print(f"{'sub-q':>6}{'CPU ms':>9}{'CPU ms/sub-q':>14}{'peak KB':>10}{'KB/sub-q':>10}")
    for r in report["growth"]:
        n = r["subtasks"]
        print(f"{n:>6}{r['cpu_ms_per_run']:>9.1f}{r['cpu_ms_per_run'] / n:>14.2f}"
              f"{r['peak_kb_per_run']:>10.0f}{r['peak_kb_per_run'] / n:>10.1f}")  # fmt: skip
