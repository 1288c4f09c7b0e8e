"""Where the graph goes next: fan-out to workers, and back to them after a critique."""

from typing import Literal

from langgraph.types import Send

from graph.state import State, WorkerInput


def fan_out(state: State) -> list[Send]:
    """One worker per planned sub-question, all in the same step so they run concurrently."""
    return [
        Send(
            "worker",
            WorkerInput(
                question=state["question"],
                task=task,
                attempt=1,
                feedback=None,
                previous_answer=None,
            ),
        )
        for task in state["plan"]
    ]


def after_critic(state: State) -> list[Send] | Literal["synthesizer"]:
    """Re-dispatch only the sub-questions the critic flagged, else write the answer."""
    if not state["pending"]:
        return "synthesizer"
    tasks = {t["id"]: t for t in state["plan"]}
    return [
        Send(
            "worker",
            WorkerInput(
                question=state["question"],
                task=tasks[revision["task_id"]],
                attempt=state["subanswers"][revision["task_id"]]["attempts"] + 1,
                feedback=revision["feedback"],
                previous_answer=state["subanswers"][revision["task_id"]]["answer"],
            ),
        )
        for revision in state["pending"]
    ]
