"""Per-run parameters, passed to the graph as its runtime context."""

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from graph.budget import Budget
from graph.journal import CallLog, Entry, Journal
from graph.ledger import CallRecord, Prices
from graph.result import RunClock, busy_ms
from graph.tools import Tools


def always() -> bool:
    return True


@dataclass(frozen=True)
class RunContext:
    """What one run may do. The caller clamps these to its own hard limits.

    ``deadline`` is a ``time.monotonic()`` instant after which no model call starts;
    ``synthesis_time_s`` of it is kept for the synthesizer. ``budget`` is this run's own
    (mutable) token and call account, and ``ledger`` receives every model call's row the moment
    it ends, so a run that is cancelled or fails still accounts for everything it spent.
    """

    max_subtasks: int = 4
    max_revisions: int = 1
    max_concurrency: int = 8
    """Worker calls in flight at once within the run."""
    plan_edges: bool = True
    """Keep the plan's dependencies; False runs every task on its own (a flat plan, for evaluation)."""
    max_output_tokens: int = 512
    tools: Tools = field(default_factory=dict)
    """The tools the run's workers may call (none: workers answer from the model alone)."""
    max_tool_calls: int = 4
    """Tool calls per task and attempt; after them the worker must answer."""
    tool_timeout_s: float = 30.0
    tool_result_chars: int = 4000
    """A tool's result (or error) is cut to this many characters before the model reads it."""
    timeout_s: float = 60.0
    max_attempts: int = 3
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0
    deadline: float | None = None
    synthesis_time_s: float = 0.0
    prices: Prices = field(default_factory=dict)
    """Model prices, for the result's cost (a model missing from them has none)."""
    budget: Budget = field(default_factory=Budget)
    ledger: list[CallRecord] = field(default_factory=list)
    journal: Journal = field(default_factory=Journal)
    """Where calls are written down as they happen, and the answers an earlier attempt of the
    run already got (a resumed run's ``ledger`` starts with that attempt's rows)."""
    clock: RunClock = field(default_factory=RunClock)
    """When the run was created, and its time before this execution, for its timings."""
    fence: Callable[[], bool] = always
    """Whether this process may still act for the run; asked before every model call and before
    a task starts. False: nothing more is called (``Fenced``), and the calls already out may
    return (a service holding the run by a lease says False once the lease may have lapsed)."""

    def resuming(self, log: CallLog | None, earlier: Iterable[Entry]) -> "RunContext":
        """This context for a run taken up again: its ledger and budget start with the calls of
        the earlier attempts, the journal replays the ones that returned, and its active time
        starts with the time those calls were out."""
        entries = sorted(earlier, key=lambda e: e.seq)
        rows = [e.row for e in entries]
        spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
        prices = self.budget.prices
        spent_usd = sum(
            prices[r["model"]].cost(r["prompt_tokens"], r["completion_tokens"])
            for r in rows
            if r["model"] in prices
        )
        answers = [r["completion_tokens"] for r in rows if r["node"] == "worker" and r["error"] is None]
        budget = dataclasses.replace(
            self.budget,
            spent=self.budget.spent + spent,
            spent_usd=self.budget.spent_usd + spent_usd,
            calls=self.budget.calls + len(rows),
            answers=self.budget.answers + sum(answers),
            longest_answer=max([self.budget.longest_answer, *answers]),
        )
        clock = dataclasses.replace(self.clock, earlier_active_ms=busy_ms(rows))
        return dataclasses.replace(
            self, ledger=rows, budget=budget, journal=Journal.resuming(log, entries), clock=clock
        )
