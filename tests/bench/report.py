"""The table `make bench` prints and the plots it writes."""

from typing import Any

from tests.bench.durability import print_durability, print_restart
from tests.bench.harness import RESULTS
from tests.bench.langgraph_server import print_langgraph_server
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


def print_observability(report: dict[str, Any]) -> None:
    o = report["observability"]
    kinds = o["spans_by_kind_per_run"]

    def spans(us: dict[str, float]) -> str:
        return ", ".join(f"{kinds[k]:g} {k} x {us[k]:.1f} µs" for k in kinds)

    print(f"\n14. observability per run, engine in-process, zero-latency stub, {o['subtasks']} "
          f"sub-questions, p50 of {o['runs']} runs each, tracing off and on interleaved")  # fmt: skip
    print(f"   the engine's own overhead (wall - backend critical path): tracing off "
          f"{o['engine_off_ms']:.2f} ms (CPU {o['cpu_off_ms']:.2f} ms), "
          f"on {o['engine_on_ms']:.2f} ms (CPU {o['cpu_on_ms']:.2f} ms); on - off, p50 of the pairs "
          f"{o['paired_added_ms']:+.2f} ms (quartiles {o['paired_added_q1_ms']:+.2f}, "
          f"{o['paired_added_q3_ms']:+.2f}), CPU {o['paired_added_cpu_ms']:+.2f} ms")  # fmt: skip
    print(f"   tracing on (SDK, BatchSpanProcessor, OTLP/HTTP to a loopback collector), "
          f"{o['spans_per_run']:g} spans per run: {spans(o['sdk_us_per_span'])} = "
          f"{o['sdk_us_per_run'] / 1000:.2f} ms in the run, + {o['export_cpu_ms_per_run']:.2f} ms of "
          f"export CPU in its thread (batches: {o['export_batches']}); over tracing off: "
          f"{o['tracing_on_ms']:.2f} ms, {o['tracing_on_pct']:.1f} %")  # fmt: skip
    print(f"   tracing off, the no-op spans: {spans(o['noop_us_per_span'])} = "
          f"{o['noop_us_per_run']:.0f} µs per run, {o['noop_pct']:.2f} %")  # fmt: skip
    print(f"   metrics, Metrics.run_ended ({o['calls_per_run']:.0f} calls, priced): "
          f"{o['metrics_us_per_run']:.0f} µs per run, {o['metrics_pct']:.2f} %")  # fmt: skip
    verdict = "below" if o["below_5pct"] else "NOT below"
    print(f"   metrics + no-op tracing: {o['metrics_us_per_run'] + o['noop_us_per_run']:.0f} µs per run, "
          f"{o['metrics_noop_pct']:.2f} % of the engine's own overhead: {verdict} 5 %")  # fmt: skip


def print_replicas(report: dict[str, Any]) -> None:
    r = report["replicas"]
    o, lag, lim = r["store_overhead"], r["event_lag"], r["limits"]
    print(f"\n13. replicas (Postgres + Redis)\n   per run, POST /v1/reason, {o['subtasks']} sub-questions, "
          f"zero-latency stub, {o['runs']} runs each, interleaved:")  # fmt: skip
    for name in ("sqlite", "postgres"):
        s = o[name]
        print(f"   {name:>9}: p50 {s['p50_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, "
              f"process CPU {s['cpu_ms_per_run']:.1f} ms/run")  # fmt: skip
    print(f"   Postgres - SQLite: p50 {o['extra_p50_ms']:+.1f} ms, p90 {o['extra_p90_ms']:+.1f} ms, "
          f"CPU {o['extra_cpu_ms_per_run']:+.1f} ms/run")  # fmt: skip
    print(f"   event on the other replica after the running one ({lag['runs']} runs, {lag['events']} live "
          f"events, {lag['latency_s']:g} s per call): p50 {lag['p50_ms']:.1f} ms, "
          f"p99 {lag['p99_ms']:.1f} ms, max {lag['max_ms']:.1f} ms")  # fmt: skip
    top = r["throughput"][-1]
    calls = ", ".join(f"{role} {count:g}" for role, count in top["calls_per_run"].items())
    print(
        f"   throughput, {top['latency_s']:g} s per call ({calls} calls per run), MAX_ACTIVE_RUNS=4 "
        "per replica, runs submitted at once; ideal: waves of 4 runs per replica at the run p50"
    )
    print(f"{'replicas':>11}{'runs':>6}{'submit s':>10}{'slots full s':>14}{'wall s':>8}{'runs/s':>8}"
          f"{'ideal':>7}{'run p50 s':>11}{'queued p50':>12}{'CPU ms/run':>12}{'machine':>9}{'PG conns':>10}"
          f"{'busy':>6}{'per replica':>13}{'publishes/run':>15}")  # fmt: skip
    for t in r["throughput"]:
        peaks = "/".join(str(v) for v in t["pg_peak_by_replica"].values())
        print(f"{t['replicas']:>11}{t['runs']:>6}{t['submit_s']:>10.2f}{t['slots_full_s']:>14.2f}"
              f"{t['wall_s']:>8.2f}{t['runs_per_s']:>8.2f}{t['ideal_runs_per_s']:>7.2f}{t['run_p50_s']:>11.2f}"
              f"{t['queued_p50_s']:>12.2f}{t['replica_cpu_ms_per_run']:>12.1f}"
              f"{t['machine_busy']:>9.0%}{t['pg_peak_connections']:>10}{t['pg_peak_busy']:>6}{peaks:>13}"
              f"{t['redis_publishes_per_run']:>15.1f}")  # fmt: skip
    runs_by = ", ".join(f"{key} {count}" for key, count in top["runs_by_replica"].items())
    channels = ", ".join(f"{name} {count}" for name, count in top["redis_messages"].items())
    print(f"   at {top['replicas']}: runs executed by {runs_by}; Redis messages by channel: {channels}; "
          f"Postgres backends' CPU {top['pg_backend_cpu_ms_per_run']:.1f} ms/run")  # fmt: skip
    handoffs = ", ".join(
        f"{t['replicas']}: p50 {t['handoff_p50_ms']:.0f} ms, max {t['handoff_max_ms']:.0f} ms"
        for t in r["throughput"]
        if t["handoff_p50_ms"] is not None
    )
    print(f"   a queued run starts after a run ended (its first model call after that end): {handoffs}")
    print(f"   3 replicas / 1: {r['scaling_3_vs_1']:.2f} x (ideal 3)")
    print(f"   limits: Postgres max_connections {lim['max_connections']} "
          f"({lim['superuser_reserved_connections']} reserved): {lim['replicas_fit_at_pool_size']} "
          f"replicas at DATABASE_POOL_SIZE={lim['pool_size']}, {lim['replicas_fit_at_peak']} at the peak "
          f"seen ({lim['peak_connections_per_replica']} per replica); "
          f"Redis {lim['redis_publishes_per_run']:.1f} publishes per run, each delivered to every replica: "
          f"{lim['redis_deliveries_per_run_at_3']:.1f} deliveries per run at 3")  # fmt: skip


def plot_replicas(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["replicas"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    table = r["throughput"]
    xs = [t["replicas"] for t in table]
    left.plot(xs, [t["runs_per_s"] for t in table], marker="o", label="measured")
    left.plot(xs, [table[0]["runs_per_s"] * x for x in xs], linestyle="--", color="grey", label="linear")
    left.set(
        xticks=xs,
        xlabel="replicas (MAX_ACTIVE_RUNS=4 each)",
        ylabel="runs/s",
        title=f"Throughput, {table[0]['latency_s']:g} s per model call",
        ylim=(0, None),
    )
    left.legend()
    series = r["connections_3"]
    apps = sorted({key for row in series for key in row if key != "t"})
    for app in apps:
        right.step([row["t"] for row in series], [row.get(app, 0) for row in series], where="post", label=app)
    right.axhline(r["limits"]["pool_size"], linestyle="--", color="grey", label="DATABASE_POOL_SIZE")
    right.set(
        xlabel="s", ylabel="Postgres connections", title="Connections per replica, 3 replicas", ylim=(0, None)
    )
    right.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "replicas.png", dpi=110)
