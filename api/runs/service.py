"""The run service of one process, wired: the graph around the backend's models, the prices,
the metrics, the registry of live runs and what acts on them, and the broker's callbacks. The
HTTP app and the CLI both start it with ``run_service``."""

from dataclasses import dataclass

from api.backend.connect import Backend
from api.backend.mcp_client import McpServers
from api.backend.prices import prices_for
from api.backend.tools import offered_tools
from api.runs.admission import Admission
from api.runs.lookup import RunLookup
from api.runs.recovery import Recovery
from api.runs.registry import Registry
from api.runs.runner import Runner
from api.runs.upkeep import Upkeep
from api.runs.worker import Worker
from api.settings import Settings
from api.storage.broker import Broker
from api.storage.interface import RunStore
from api.telemetry.metrics import Metrics
from graph import Prices, build_graph


@dataclass(frozen=True)
class RunService:
    settings: Settings
    backend: Backend
    store: RunStore
    broker: Broker
    prices: Prices
    metrics: Metrics
    registry: Registry
    runner: Runner
    lookup: RunLookup
    mcp: McpServers


def run_service(
    settings: Settings,
    backend: Backend,
    store: RunStore,
    broker: Broker | None = None,
    mcp: McpServers | None = None,
) -> RunService:
    """The service on ``store``; ``broker`` carries wake-ups between replicas (none: one process);
    ``mcp``: the MCP servers connected (their tools are offered with the calculator). Nothing runs
    until ``runner.start()``."""
    broker = broker or Broker()
    mcp = mcp or McpServers()
    graph = build_graph(backend.models, checkpointer=store.checkpointer)
    prices = prices_for(settings.prices_file, backend)
    metrics = Metrics()
    registry = Registry(settings.max_active_runs)
    tools = offered_tools(settings, embedded=backend.embedded, connected=mcp.tools, degraded=bool(mcp.failed))
    admission = Admission(settings, prices, backend.models, tools)
    worker = Worker(settings, store, broker, registry, graph, prices, metrics)
    recovery = Recovery(settings, store, broker, registry, worker, admission, backend.counter)
    upkeep = Upkeep(settings, store, broker, registry, recovery)
    lookup = RunLookup(registry, store, broker, settings.sse_heartbeat_s)
    runner = Runner(
        settings, store, broker, backend.counter, admission, registry, worker, recovery, upkeep, lookup
    )
    broker.on_wake = upkeep.poke
    broker.on_cancel = registry.cancel_if_here
    registry.on_free = upkeep.poke
    return RunService(settings, backend, store, broker, prices, metrics, registry, runner, lookup, mcp)
