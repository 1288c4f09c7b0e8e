"""Validating and repairing a plan, task by task, as it arrives: pure.

A planner's task list is read in order. Each task gets the id ``t1``, ``t2``, … by position among
the tasks kept, and may depend only on tasks kept before it, so every plan that comes out is a
DAG in topological order. What does not fit is dropped and said in a fallback: a sub-question that
is no question (blank, a copy of a prompt keyword or tag, only a word or two), a task beyond the
limit, and every dependency that is unknown, on itself, on a later task (the only way to make a
cycle) or on a dropped task.
"""

import json
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from graph.state import Fallback, SubTask

MIN_WORDS = 3
"""A sub-question of fewer words is not a question (the embedded model plans "json_object")."""

PROMPT_WORDS = frozenset(
    {
        "json",
        "json_object",
        "json_schema",
        "object",
        "schema",
        "subquestion",
        "subquestions",
        "sub-question",
        "sub-questions",
        "question",
        "questions",
        "depends_on",
        "id",
        "answer",
        "task",
        "tasks",
        "plan",
    }
)
"""Words of the planner's own prompt and schema, which small models echo back as tasks."""

_TAG = re.compile(r"</?\s*[A-Za-z_][\w-]*\s*/?>")
_WORD = re.compile(r"[\w'\u2019-]+")


def junk_reason(question: str) -> str | None:
    """Why this sub-question is no question, or None if it is one."""
    text = question.strip()
    if not text:
        return "blank"
    if _TAG.fullmatch(text) or text.strip("<>/ \"'`{}[]").lower() in PROMPT_WORDS:
        return "a copy of a prompt keyword or tag"
    words = [w for w in _WORD.findall(_TAG.sub(" ", text)) if w.lower() not in PROMPT_WORDS]
    if len(words) < MIN_WORDS:
        return "only a word or two"
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


class PlanBuilder:
    """Takes the planner's tasks one at a time; ``add`` returns the task kept, if any."""

    def __init__(self, max_tasks: int, *, edges: bool = True, tools: Collection[str] = ()) -> None:
        self.max_tasks = max_tasks
        self.edges = edges
        self.tools = tools
        self.tasks: list[SubTask] = []
        self.fallbacks: list[Fallback] = []
        self._ids: dict[str, str] = {}
        self._dropped: set[str] = set()
        self._seen = 0

    @property
    def seen(self) -> int:
        """How many tasks the planner has written so far, kept or not."""
        return self._seen

    def whole_question(self, question: str) -> SubTask:
        """The plan of last resort: the whole question as its only task."""
        task = SubTask(id=f"t{len(self.tasks) + 1}", question=question, depends_on=[])
        self.tasks.append(task)
        return task

    def _repair(self, kind: str, detail: str) -> None:
        self.fallbacks.append(Fallback(node="planner", kind=kind, detail=detail))

    def add(self, raw: Any) -> SubTask | None:
        """One task as the planner wrote it: ``{"id", "question", "depends_on"}`` or a bare string."""
        self._seen += 1
        if isinstance(raw, str):
            raw = {"question": raw}
        if not isinstance(raw, dict):
            self._repair("invalid_task", f"task {self._seen} is not an object; dropped")
            return None
        raw_id = raw.get("id")
        given_id = (str(raw_id) if isinstance(raw_id, int | float) else _text(raw_id)) or f"#{self._seen}"
        question = _text(raw.get("question"))
        if (why := junk_reason(question)) is not None:
            self._dropped.add(given_id)
            self._repair("junk_subquestion", f"dropped {question[:80]!r}: {why}")
            return None
        if len(self.tasks) >= self.max_tasks:
            self._dropped.add(given_id)
            self._repair(
                "too_many_tasks", f"dropped {question[:80]!r}: the plan may have {self.max_tasks} tasks"
            )
            return None
        task_id = f"t{len(self.tasks) + 1}"
        name = task_id if given_id == task_id else f"{task_id} (the planner's {given_id!r})"
        depends_on: list[str] = []
        refs = raw.get("depends_on") if self.edges else None
        for ref in refs if isinstance(refs, list) else []:
            ref_id = _text(ref) if isinstance(ref, str) else str(ref)
            if ref_id == given_id:
                self._repair("dropped_dependency", f"{name}: dropped its dependency on itself")
            elif ref_id in self._ids:
                if self._ids[ref_id] not in depends_on:
                    depends_on.append(self._ids[ref_id])
            elif ref_id in self._dropped:
                self._repair(
                    "dropped_dependency", f"{name}: dropped its dependency on {ref_id!r}, a dropped task"
                )
            else:
                self._repair(
                    "dropped_dependency",
                    f"{name}: dropped its dependency on {ref_id!r}, not an earlier task",
                )
        if given_id in self._ids:
            self._repair("duplicate_id", f"{task_id}: id {given_id!r} is taken; it is {task_id}")
        else:
            self._ids[given_id] = task_id
        task = SubTask(id=task_id, question=question, depends_on=depends_on)
        if wanted := self._tools(name, raw.get("tools")):
            task["tools"] = wanted
        self.tasks.append(task)
        return task

    def _tools(self, name: str, raw: Any) -> list[str]:
        """The tools a task names that the run has; any other name is dropped, and said so."""
        wanted: list[str] = []
        for tool in raw if isinstance(raw, list) else []:
            if tool in self.tools and tool not in wanted:
                wanted.append(tool)
            elif tool not in self.tools:
                self._repair(
                    "dropped_tool", f"{name}: dropped the tool {str(tool)[:40]!r}, which the run has not"
                )
        return wanted


class PlanReader:
    """Reads a plan while the planner writes it: each task kept goes to ``on_task`` once, the
    moment its JSON object is complete; ``finish`` takes the reply as parsed in the end."""

    def __init__(
        self,
        max_tasks: int,
        on_task: Callable[[SubTask], None],
        *,
        edges: bool = True,
        tools: Collection[str] = (),
    ) -> None:
        self.builder = PlanBuilder(max_tasks, edges=edges, tools=tools)
        self._on_task = on_task
        self._scanner = PlanScanner()
        self._text = ""
        self._read: list[Any] = []

    def feed(self, piece: str) -> None:
        """The next piece of the reply."""
        self._text += piece
        for raw in self._scanner.feed(self._text):
            self._read.append(raw)
            self._take(raw)

    def _take(self, raw: Any) -> None:
        task = self.builder.add(raw)
        if task is not None:
            self._on_task(task)

    def finish(self, raw_tasks: list[Any] | None, error: str | None, question: str) -> list[Fallback]:
        """The plan is written: ``raw_tasks`` as parsed (None if the reply did not validate,
        ``error`` says why). Returns every repair; the plan falls back to the whole question."""
        fallbacks: list[Fallback] = []
        read = len(self.builder.tasks)
        same_start = raw_tasks is not None and raw_tasks[: len(self._read)] == self._read
        if raw_tasks is not None and (same_start or not read):
            for raw in raw_tasks[len(self._read) if same_start else 0 :]:
                self._take(raw)
        elif read:
            why = error or "a retry wrote another plan"
            detail = f"the plan did not validate in the end ({why}); the {read} task(s) read are kept"
            fallbacks.append(Fallback(node="planner", kind="incomplete_plan", detail=detail))
        fallbacks.extend(self.builder.fallbacks)
        if not self.builder.tasks:
            self._on_task(self.builder.whole_question(question))
            why = error or "no task was a question"
            fallbacks.append(
                Fallback(
                    node="planner",
                    kind="single_subquestion",
                    detail=f"no usable plan ({why}); the whole question is the only sub-question",
                )
            )
        return fallbacks

    @property
    def tasks(self) -> list[SubTask]:
        return self.builder.tasks

    @property
    def started(self) -> bool:
        """Whether any task was read while the reply streamed."""
        return self.builder.seen > 0


def build_plan(raw_tasks: Iterable[Any], max_tasks: int) -> tuple[list[SubTask], list[Fallback]]:
    """A whole plan at once: the tasks kept, and every repair."""
    builder = PlanBuilder(max_tasks)
    for raw in raw_tasks:
        builder.add(raw)
    return builder.tasks, builder.fallbacks


class PlanScanner:
    """Finds each complete task object in a plan's JSON while it is still being written.

    ``feed`` takes the text so far (it only grows) and returns the objects completed since the
    last call. It reads the array of the plan's ``"subquestions"`` key and nothing else.
    """

    KEY = '"subquestions"'

    def __init__(self) -> None:
        self._pos = 0
        self._done = False
        self._in_array = False
        self._depth = 0
        self._start = -1
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> list[Any]:
        found: list[Any] = []
        if self._done:
            return found
        if not self._in_array:
            key = text.find(self.KEY)
            bracket = text.find("[", key + len(self.KEY)) if key != -1 else -1
            if bracket == -1:
                return found
            self._in_array, self._pos = True, bracket + 1
        i = self._pos
        while i < len(text):
            ch = text[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
                if self._depth == 0:
                    self._start = i
            elif ch in "{[":
                if self._depth == 0:
                    self._start = i
                self._depth += 1
            elif ch in "}]":
                if self._depth == 0:  # the end of the array: one plan per reply
                    self._done = True
                    return found
                self._depth -= 1
                if self._depth == 0:
                    found.extend(self._load(text[self._start : i + 1]))
            i += 1
            if not self._in_string and self._depth == 0 and ch == '"' and self._start >= 0:
                found.extend(self._load(text[self._start : i]))
                self._start = -1
        self._pos = i
        return found

    @staticmethod
    def _load(piece: str) -> list[Any]:
        try:
            return [json.loads(piece)]
        except json.JSONDecodeError:
            return []
