"""Validating and repairing plans, and reading them while they are still being written."""

import json

import pytest

from graph.plan import PlanBuilder, PlanReader, PlanScanner, build_plan, junk_reason
from graph.state import SubTask


def task(id_: str, question: str, *deps: str) -> dict[str, object]:
    return {"id": id_, "question": question, "depends_on": list(deps)}


def test_a_plan_without_edges_is_kept_as_it_is() -> None:
    tasks, fallbacks = build_plan(
        [task("a", "What is the capital of France?"), task("b", "What is the capital of Spain?")], 4
    )
    assert tasks == [
        SubTask(id="t1", question="What is the capital of France?", depends_on=[]),
        SubTask(id="t2", question="What is the capital of Spain?", depends_on=[]),
    ]
    assert fallbacks == []


def test_a_chain_keeps_its_edges_under_new_ids() -> None:
    tasks, fallbacks = build_plan(
        [
            task("x1", "Which country won the 2018 World Cup?"),
            task("x2", "Who was that country's president then?", "x1"),
            task("x3", "How old was that president at the time?", "x2", "x1", "x2"),
        ],
        4,
    )
    assert [t["depends_on"] for t in tasks] == [[], ["t1"], ["t2", "t1"]]
    assert fallbacks == []


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ([task("t1", "What is two plus two?", "t1")], "on itself"),
        ([task("t1", "What is two plus two?", "t9")], "'t9', not an earlier task"),
        (
            [task("t1", "What is two plus two?", "t2"), task("t2", "What is three plus three?")],
            "not an earlier",
        ),
        (
            [task("t1", "What is two plus two?", "t2"), task("t2", "What is three plus three?", "t1")],
            "not an earlier",
        ),
    ],
    ids=["self", "unknown", "later", "cycle"],
)
def test_bad_edges_are_dropped_and_said(raw: list[dict[str, object]], detail: str) -> None:
    tasks, fallbacks = build_plan(raw, 4)
    assert tasks[0]["depends_on"] == []
    assert [f["kind"] for f in fallbacks] == ["dropped_dependency"]
    assert detail in fallbacks[0]["detail"]
    ids = {t["id"] for t in tasks}
    for position, t in enumerate(tasks):
        assert set(t["depends_on"]) <= {u["id"] for u in tasks[:position]} <= ids, "a DAG in order"


@pytest.mark.parametrize(
    "question",
    [
        "",
        "   ",
        "json_object",
        "<question>",
        "</question>",
        '"subquestions"',
        "Paris",
        "Paris, France",
        "json id?",
    ],
)
def test_sub_questions_that_are_no_questions_are_dropped(question: str) -> None:
    assert junk_reason(question) is not None
    tasks, fallbacks = build_plan(
        [task("t1", question), task("t2", "What is the capital of Spain?", "t1")], 4
    )
    assert [t["question"] for t in tasks] == ["What is the capital of Spain?"]
    assert tasks[0]["depends_on"] == []
    assert [f["kind"] for f in fallbacks] == ["junk_subquestion", "dropped_dependency"]


@pytest.mark.parametrize("question", ["Who won?", "How old is she?", "What is 15 times 4?"])
def test_short_real_questions_are_kept_when_they_have_three_words(question: str) -> None:
    assert (junk_reason(question) is None) == (len(question.split()) >= 3)


def test_bare_strings_and_the_limit() -> None:
    tasks, fallbacks = build_plan(
        ["What is one plus one?", "What is two plus two?", "What is three plus three?"], 2
    )
    assert [t["id"] for t in tasks] == ["t1", "t2"]
    assert [f["kind"] for f in fallbacks] == ["too_many_tasks"]


def test_duplicate_ids_resolve_to_the_first() -> None:
    tasks, fallbacks = build_plan(
        [
            task("a", "What is one plus one?"),
            task("a", "What is two plus two?"),
            task("b", "And their sum is?", "a"),
        ],
        4,
    )
    assert tasks[2]["depends_on"] == ["t1"]
    assert [f["kind"] for f in fallbacks] == ["duplicate_id"]


def test_the_builder_takes_tasks_one_at_a_time_like_build_plan() -> None:
    raw = [task("a", "What is one plus one?"), task("b", "What is two plus two?", "a", "c"), "json"]
    builder = PlanBuilder(4)
    kept = [builder.add(r) for r in raw]
    assert [k["id"] if k else None for k in kept] == ["t1", "t2", None]
    assert (builder.tasks, builder.fallbacks) == build_plan(raw, 4)


def test_the_scanner_yields_each_task_as_soon_as_its_object_closes() -> None:
    plan = {
        "subquestions": [
            task("t1", 'What is "x" {with braces} and [brackets]?'),
            task("t2", "Then what is y\\n?", "t1"),
            "A bare string task here?",
        ]
    }
    text = json.dumps(plan)
    scanner = PlanScanner()
    found: list[tuple[int, object]] = []
    for end in range(1, len(text) + 1):
        found.extend((end, item) for item in scanner.feed(text[:end]))
    assert [item for _, item in found] == plan["subquestions"]
    first = json.dumps(plan["subquestions"][0])
    first_close = text.index(first) + len(first)
    assert found[0][0] == first_close, "no later than the character that completes it"


def test_the_scanner_ignores_prose_and_a_second_plan() -> None:
    text = 'Sure! ```json\n{"subquestions": [{"id": "t1", "question": "Q one two?"}]} {"subquestions": ["x"]}'
    assert PlanScanner().feed(text) == [{"id": "t1", "question": "Q one two?"}]


def test_a_flat_plan_keeps_no_edges_and_says_nothing() -> None:
    builder = PlanBuilder(4, edges=False)
    for raw in [task("a", "What is one plus one?"), task("b", "What is that plus two?", "a", "zz")]:
        builder.add(raw)
    assert [t["depends_on"] for t in builder.tasks] == [[], []]
    assert builder.fallbacks == []


def test_a_plan_rewritten_by_a_retry_keeps_only_the_tasks_already_started() -> None:
    started: list[str] = []
    reader = PlanReader(4, lambda t: started.append(t["question"]))
    first = task("t1", "What is one plus one?")
    reader.feed('{"subquestions": [' + json.dumps(first) + ', {"id": "t2", "quest')
    other = [task("t1", "How many people live in Paris?"), task("t2", "And how many in Rome today?")]
    fallbacks = reader.finish(other, None, "Q?")
    assert started == ["What is one plus one?"]
    assert [f["kind"] for f in fallbacks] == ["incomplete_plan"]


def test_numeric_ids_keep_their_edges_when_streamed() -> None:
    reader = PlanReader(4, lambda t: None)
    reader.feed(
        json.dumps(
            {
                "subquestions": [
                    {"id": 1, "question": "What is one plus one?", "depends_on": []},
                    {"id": 2, "question": "What is that plus two?", "depends_on": [1]},
                ]
            }
        )
    )
    assert [t["depends_on"] for t in reader.tasks] == [[], ["t1"]]
