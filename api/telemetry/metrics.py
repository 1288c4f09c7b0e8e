"""Prometheus metrics of this process, in the Prometheus text format at ``GET /metrics``.

Counted when a run ends here, from its result (its ledger rows), so the tokens and cost by node
in ``/metrics`` are the sums of the ``by_node`` of the runs this process ended. Tool calls are
counted as their results are written. Labels stay few and bounded: node (4 values), model and
tool (the configured ones), status, outcome, kind; never a run id or a question. Gauges are
read when the metrics are scraped."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from api.storage.interface import Status
from graph import CallRecord, Prices, Result
from graph.events import ToolResult

# The *_created series say only when a label set first appeared: left out.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def outcome(call: CallRecord, calls: list[CallRecord]) -> str:
    """ok; retried (it failed, and the same call was tried again); failed (for good)."""
    if call["error"] is None:
        return "ok"
    again = any(
        (c["node"], c["task_id"], c["attempt"], c["retry"])
        == (call["node"], call["task_id"], call["attempt"], call["retry"] + 1)
        for c in calls
    )
    return "retried" if again else "failed"


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.runs = Counter(
            "reasoner_runs", "Runs ended in this process, by final status", ["status"], registry=r
        )
        self.run_duration = Histogram(
            "reasoner_run_duration_seconds", "Run duration, admission to end", buckets=RUN_BUCKETS, registry=r
        )
        self.active = Gauge("reasoner_active_runs", "Runs executing in this process", registry=r)
        self.queued = Gauge(
            "reasoner_queued_runs", "Runs waiting for a slot (in the store, for replicas)", registry=r
        )
        self.streams = Gauge("reasoner_open_streams", "Event streams open on this process", registry=r)
        self.calls = Counter(
            "reasoner_model_calls", "Model calls, by outcome", ["node", "model", "outcome"], registry=r
        )
        self.retries = Counter(
            "reasoner_model_call_retries", "Model calls that were retries", ["node", "model"], registry=r
        )
        self.tokens = Counter(
            "reasoner_tokens",
            "Tokens the backend reported (or estimated)",
            ["node", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "reasoner_cost_usd", "US dollars, for models with a price", ["node", "model"], registry=r
        )
        self.call_duration = Histogram(
            "reasoner_model_call_duration_seconds",
            "Model call latency, each try",
            ["node", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_calls = Counter(
            "reasoner_tool_calls",
            "Tool calls made by workers, by tool and outcome (ok or error)",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_duration = Histogram(
            "reasoner_tool_call_duration_seconds",
            "Tool call latency",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.budget_exhausted = Counter(
            "reasoner_budget_exhausted", "Runs that ran out of their token or cost budget", registry=r
        )

    def run_ended(self, status: Status, result: Result, prices: Prices) -> None:
        self.runs.labels(status).inc()
        self.run_duration.observe(result["timings"]["total_ms"] / 1000)
        if result["budget_exhausted"]:
            self.budget_exhausted.inc()
        calls = result["calls"]
        for call in calls:
            node, model = call["node"], call["model"]
            self.calls.labels(node, model, outcome(call, calls)).inc()
            if call["retry"]:
                self.retries.labels(node, model).inc()
            self.tokens.labels(node, model, "prompt").inc(call["prompt_tokens"])
            self.tokens.labels(node, model, "completion").inc(call["completion_tokens"])
            self.call_duration.labels(node, model).observe(call["latency_ms"] / 1000)
            price = prices.get(model)
            if price is not None:
                self.cost.labels(node, model).inc(
                    price.cost(call["prompt_tokens"], call["completion_tokens"])
                )

    def tool_called(self, result: ToolResult) -> None:
        """A tool call's outcome, counted the moment its event is written."""
        name = result["name"]
        self.tool_calls.labels(name, "ok" if result["error"] is None else "error").inc()
        self.tool_duration.labels(name).observe(result["duration_ms"] / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
