"""Runs a plan's tasks as soon as their dependencies have answers.

The plan may still be growing (a streamed planner adds tasks as it writes them); ``close``
says it is complete. At most ``limit`` tasks run at once. A task whose dependency failed for
good is not run: it fails with "dependency tN failed". No barrier: a slow task holds back only
the tasks that depend on it. This is LangGraph's own LLMCompiler pattern (a scheduler inside the
node that plans), since a graph step waits for all of its tasks before the next step starts.

A ``fence`` that says no stops the dispatching: no task starts after it, and the tasks whose
calls are out are let finish (their answers are journaled), so ``wait`` raises ``Fenced`` once
nothing runs.
"""

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping

from graph.errors import Fenced
from graph.scheduling import blocked, ready
from graph.state import SubAnswer, SubTask

RunTask = Callable[[SubTask, list[SubAnswer]], Awaitable[SubAnswer]]
"""Answers one task, given the answers of the tasks it depends on."""

Blocked = Callable[[SubTask, str], SubAnswer]
"""The failed answer of a task that cannot run because this dependency failed."""


class Dispatcher:
    def __init__(
        self,
        run: RunTask,
        blocked_answer: Blocked,
        *,
        limit: int,
        answered: Mapping[str, SubAnswer] | None = None,
        fence: Callable[[], bool] = lambda: True,
    ) -> None:
        """``answered`` are answers that stand (an earlier round's): their tasks are not run.

        Each task runs in a copy of the context the dispatcher is made in (the node's, with its
        span), not of whatever is current when the task becomes ready (the planner's streamed
        call, say)."""
        self._run = run
        self._blocked_answer = blocked_answer
        self._fence = fence
        self._slots = asyncio.Semaphore(limit)
        self._context = contextvars.copy_context()
        self.plan: list[SubTask] = []
        self._by_id: dict[str, SubTask] = {}
        self.answers: dict[str, SubAnswer] = dict(answered or {})
        self._started: set[str] = set(self.answers)
        self._blocked: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._changed = asyncio.Event()
        self._error: BaseException | None = None

    def add(self, task: SubTask) -> None:
        """A task of the plan (in plan order); it starts at once if it can."""
        self.plan.append(task)
        self._by_id[task["id"]] = task
        self._advance()

    def close(self) -> None:
        """The plan is complete."""
        self._closed = True
        self._advance()

    def _ok(self) -> set[str]:
        return {t for t, a in self.answers.items() if a["status"] == "ok"}

    def _advance(self) -> None:
        # The tasks that failed themselves: a blocked task names the failure at the root of its chain.
        failed = {t for t, a in self.answers.items() if a["status"] != "ok" and t not in self._blocked}
        for task_id, dependency in blocked(self.plan, failed).items():
            if task_id not in self._started:
                self._started.add(task_id)
                self._blocked.add(task_id)
                self.answers[task_id] = self._blocked_answer(self._by_id[task_id], dependency)
        for task_id in ready(self.plan, self._ok(), self._started):
            self._started.add(task_id)
            runner = asyncio.create_task(
                self._one(self._by_id[task_id]), name=f"task {task_id}", context=self._context.copy()
            )
            self._tasks.add(runner)
            runner.add_done_callback(self._tasks.discard)
        self._changed.set()

    async def _one(self, task: SubTask) -> None:
        try:
            async with self._slots:
                if not self._fence():
                    raise Fenced(task["id"])
                inputs = [self.answers[d] for d in task["depends_on"]]
                self.answers[task["id"]] = await self._run(task, inputs)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = self._error or exc
        self._advance()

    async def wait(self) -> dict[str, SubAnswer]:
        """Every task's answer, once the plan is closed and nothing runs; re-raises the first
        unexpected error of a task."""
        while True:
            if self._error is not None:
                if isinstance(self._error, Fenced) and self._tasks:
                    await asyncio.wait(set(self._tasks))  # calls out may return; none starts
                    continue
                raise self._error
            if self._closed and all(t["id"] in self.answers for t in self.plan):
                return self.answers
            self._changed.clear()
            await self._changed.wait()

    async def cancel(self) -> None:
        """Stop every task still running, and wait until they have stopped."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
