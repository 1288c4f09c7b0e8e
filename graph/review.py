"""The critic's decision, pure: a verdict for every answer it reviewed (an answer it gave no
verdict is accepted), the revisions those verdicts ask for, and the revisions that failed."""

from graph.prompts import DEFAULT_FEEDBACK
from graph.schemas import Critique
from graph.state import Fallback, Revision, SubAnswer, VerdictRecord


def verdicts_for(
    round_: int, task_ids: list[str], critique: Critique | None, error: str | None
) -> tuple[list[VerdictRecord], list[Fallback]]:
    """A verdict for each of ``task_ids`` from the critique (None: the critic's call failed, or
    its reply did not parse, for ``error``), and a fallback for each verdict it did not give."""
    given = {v.task_id: v for v in critique.verdicts} if critique else {}
    fallbacks: list[Fallback] = []
    if critique is None:
        fallbacks.append(Fallback(node="critic", kind="accept_all", detail=f"{error}; every answer accepted"))
    elif missing := [t for t in task_ids if t not in given]:
        fallbacks.append(
            Fallback(
                node="critic",
                kind="missing_verdict",
                detail=f"no verdict for {', '.join(missing)}; accepted",
            )
        )
    verdicts = [
        VerdictRecord(
            round=round_,
            task_id=t,
            verdict=given[t].verdict if t in given else "accept",
            feedback=given[t].feedback.strip() if t in given else "",
        )
        for t in task_ids
    ]
    return verdicts, fallbacks


def revisions_asked(verdicts: list[VerdictRecord]) -> list[Revision]:
    return [
        Revision(task_id=v["task_id"], feedback=v["feedback"] or DEFAULT_FEEDBACK)
        for v in verdicts
        if v["verdict"] == "revise"
    ]


def failed_revisions(answers: dict[str, SubAnswer], rerun: set[str]) -> list[Fallback]:
    """A fallback for each re-run task whose new try failed and that kept its previous answer."""
    return [
        Fallback(
            node="worker",
            kind="revision_failed",
            detail=f"{task_id}: revision {answers[task_id]['attempts']} failed "
            f"({answers[task_id]['error']}); the previous answer is kept",
        )
        for task_id in sorted(rerun)
        if answers[task_id]["error"] is not None and answers[task_id]["status"] == "ok"
    ]
