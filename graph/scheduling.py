"""Which tasks of a plan can start, and what a failure or a revision reaches: pure."""

from collections.abc import Collection, Iterable

from graph.state import SubTask


def ready(plan: Iterable[SubTask], answered: Collection[str], started: Collection[str]) -> list[str]:
    """Tasks not started yet whose every dependency has an answer, in plan order."""
    return [
        t["id"] for t in plan if t["id"] not in started and all(dep in answered for dep in t["depends_on"])
    ]


def blocked(plan: Iterable[SubTask], failed: Collection[str]) -> dict[str, str]:
    """Tasks that can never run because a dependency failed for good, each with the failed task
    it waits on (directly or through a chain). Plans are in topological order."""
    out: dict[str, str] = {}
    for task in plan:
        for dep in task["depends_on"]:
            if dep in failed:
                out[task["id"]] = dep
                break
            if dep in out:
                out[task["id"]] = out[dep]
                break
    return out


def dependents(plan: Iterable[SubTask], roots: Collection[str]) -> list[str]:
    """Every task that depends on one of ``roots``, directly or through a chain, in plan order."""
    reached: set[str] = set(roots)
    out: list[str] = []
    for task in plan:
        if task["id"] not in roots and any(dep in reached for dep in task["depends_on"]):
            reached.add(task["id"])
            out.append(task["id"])
    return out


def critical_path(plan: Iterable[SubTask]) -> int:
    """The length of the longest chain of tasks (1 for a plan without edges)."""
    depth: dict[str, int] = {}
    for task in plan:
        depth[task["id"]] = 1 + max((depth.get(dep, 0) for dep in task["depends_on"]), default=0)
    return max(depth.values(), default=0)
