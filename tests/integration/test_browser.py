"""The web page in a real browser: headless Chromium driven by Playwright."""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Route, expect, sync_playwright

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import ROLES, Fault, StubBackend, model_name
from tests.support.browser import CHROMIUM, FLAGS
from tests.support.cluster import start, submit, view
from tests.support.runs import BODY, until, workers_received

pytestmark = pytest.mark.browser


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `make install-browser` (Debian package chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield context
        context.close()


ANSWER = "The final answer is 42."


def ask(page: Page, url: str, question: str, effort: str = "") -> None:
    page.goto(url)
    page.fill("#question", question)
    page.select_option("#effort", effort)
    page.click("#submit")


def revised_run(browser: BrowserContext, service: Service, stub: StubBackend) -> Page:
    """A page that ran three sub-questions, each sent back once by the critic."""
    stub.options.subtasks = 3
    stub.options.revise_first_round = True
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    return page


def record_status(page: Page) -> None:
    """Keep every text the status line shows in ``window.statuses``, in order (each change
    is a mutation record, so none is lost when several happen in one task)."""
    page.evaluate(
        """() => {
            window.statuses = [];
            new MutationObserver((records) => {
                for (const record of records) {
                    for (const node of record.addedNodes) window.statuses.push(node.textContent);
                }
            }).observe(document.getElementById("status"), {childList: true});
        }"""
    )


def test_question_in_live_cards_answer_and_tokens_out(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.latency_s = 1.0
    stub.options.subtasks = 3
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#plan li")).to_have_count(3)
    expect(page.locator(".card.running").first).to_be_visible()
    expect(page.locator(".card.done")).to_have_count(3, timeout=20_000)
    expect(page.locator("#critique li").first).to_be_visible()
    expect(page.locator("#answer")).to_have_text("The final answer is 42.", timeout=20_000)
    total = sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    expect(page.locator("#u-total")).to_have_text(str(total))
    expect(page.locator("#usage-nodes tbody tr")).to_have_count(4)
    assert "#run=run_" in page.url

    page.reload()
    expect(page.locator("#answer")).to_have_text("The final answer is 42.", timeout=20_000)
    expect(page.locator(".card.done")).to_have_count(3)
    expect(page.locator("#u-total")).to_have_text(str(total))


def test_errors_are_shown_plainly(browser: BrowserContext, service: Service) -> None:
    page = browser.new_page()
    page.goto(f"{service.url}/#run=run_doesnotexist")
    expect(page.locator("#error")).to_contain_text("no run with id")


def test_status_shows_the_stage_that_is_running(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    """Every stage is on screen while its calls run (each takes 0.5 s); the order is checked
    on the recorded texts, so it does not depend on when expect() polls."""
    stub.options.latency_s = 0.5
    stub.options.subtasks = 2
    stub.options.revise_first_round = True
    page = browser.new_page()
    page.goto(service.url)
    record_status(page)
    page.fill("#question", "Why is the sky blue?")
    page.click("#submit")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Done in"), timeout=20_000)
    expected = [
        "Planning…",
        "Workers are answering…",
        "The critic is reviewing the answers (round 1)…",
        "Workers are revising answers (round 1)…",
        "Writing the answer…",
    ]
    statuses = page.evaluate("window.statuses")
    remaining = iter(statuses)
    assert all(text in remaining for text in expected), statuses  # each shown, in this order


def test_revise_verdicts_show_their_feedback(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    page = revised_run(browser, service, stub)
    feedback = page.locator("#critique li.verdict-revise .feedback")
    expect(feedback).to_have_text(["more detail"] * 3)
    for item in feedback.all():
        expect(item).to_be_visible()


def test_worker_cards_add_up_to_the_worker_row(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    page = revised_run(browser, service, stub)
    pattern = re.compile(r"^(\d+) tokens \(attempt 1: (\d+), attempt 2: (\d+)\)$")
    expect(page.locator(".card .t")).to_have_text([pattern] * 3)
    totals = []
    for text in page.locator(".card .t").all_inner_texts():
        match = pattern.fullmatch(text)
        assert match is not None
        total, first, second = map(int, match.groups())
        assert total == first + second
        totals.append(total)
    worker_row = page.locator("#usage-nodes tbody tr", has_text="worker").locator("td")
    assert sum(totals) == int(worker_row.nth(4).inner_text())
    assert sum(totals) == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls_of("worker"))


def test_page_fits_a_phone(browser: BrowserContext, service: Service, stub: StubBackend) -> None:
    stub.options.worker_reply = "See https://example.com/" + "a" * 200
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(page.locator("#usage-nodes tbody tr")).to_have_count(4)
    expect(page.locator(".card.done")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_favicon_is_served(client: httpx.Client) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.lstrip().startswith("<svg")
    assert '<link rel="icon" href="/favicon.ico" type="image/svg+xml">' in client.get("/").text


def test_reload_restores_the_effort(browser: BrowserContext, service: Service, stub: StubBackend) -> None:
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?", effort="low")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(page.locator("#plan li")).to_have_count(2)

    page.reload()
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(page.locator("#effort")).to_have_value("low")

    fresh = browser.new_page()
    fresh.goto(page.url)
    expect(fresh.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(fresh.locator("#effort")).to_have_value("low")


@pytest.mark.parametrize("lookup_works", [True, False], ids=["status-found", "status-unavailable"])
def test_no_content_from_a_finished_stream_ends_the_run(
    browser: BrowserContext, service: Service, stub: StubBackend, lookup_works: bool
) -> None:
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)

    streams: list[str] = []

    def no_content(route: Route) -> None:
        streams.append(route.request.url)
        route.fulfill(status=204)

    fresh = browser.new_page()
    fresh.route("**/v1/runs/*/events", no_content)
    if not lookup_works:
        fresh.route(re.compile(r"/v1/runs/run_\w+$"), lambda route: route.fulfill(status=503))
    fresh.goto(page.url)
    ended = "The run ended: completed." if lookup_works else "The run has ended."
    expect(fresh.locator("#status")).to_have_text(ended)
    expect(fresh.locator("#error")).to_be_hidden()
    expect(fresh.locator("#submit")).to_be_enabled()
    expect(fresh.locator("#cancel")).to_be_hidden()
    assert len(streams) == 1


NATIVE_EVENT_SOURCE = """
async (url) => {
  const seen = { opens: 0, errors: 0, events: [] };
  const source = new EventSource(url);
  source.addEventListener("open", () => seen.opens++);
  source.addEventListener("run.completed", (e) => seen.events.push(["run.completed", e.lastEventId]));
  source.onmessage = (e) => seen.events.push(["message", e.lastEventId]);
  await new Promise((resolve) => {
    source.addEventListener("error", () => {
      seen.errors++;
      if (source.readyState === EventSource.CLOSED) resolve();
    });
  });
  return seen;
}
"""


def test_a_native_event_source_closes_by_itself_after_the_run(
    browser: BrowserContext, service: Service, client: httpx.Client
) -> None:
    result = client.post("/v1/reason", json={"question": "Q?", "max_revisions": 0}).json()
    page = browser.new_page()
    requests: list[int] = []
    page.on("response", lambda r: requests.append(r.status) if "/events" in r.url else None)
    page.goto(service.url)
    seen = page.evaluate(NATIVE_EVENT_SOURCE, f"/v1/runs/{result['run_id']}/events")
    # The whole run once, then one reconnect with Last-Event-ID that gets 204 and closes it.
    stored = client.get(f"/v1/runs/{result['run_id']}/events").text
    last_id = [line.removeprefix("id: ") for line in stored.splitlines() if line.startswith("id: ")][-1]
    assert seen["events"] == [["run.completed", last_id]], "every event is named"
    assert seen["opens"] == 1
    assert requests == [200, 204]


CHAIN = [
    {"id": "t1", "question": "Which country won the 2018 World Cup?", "depends_on": []},
    {"id": "t2", "question": "Who was its president then?", "depends_on": ["t1"]},
]

ARROW_JOINS = """
([from, to]) => {
  // The arrow starts on an edge of the dependency's card and ends on the dependent's left edge.
  const arrow = document.querySelector(`#plan-section svg [data-from="${from}"][data-to="${to}"]`);
  const source = document.querySelector(`.card[data-task="${from}"]`);
  const target = document.querySelector(`.card[data-task="${to}"]`);
  if (!arrow || !source || !target || !arrow.getTotalLength()) return false;
  const m = arrow.getScreenCTM();
  const screen = (p) => ({ x: m.a * p.x + m.c * p.y + m.e, y: m.b * p.x + m.d * p.y + m.f });
  const start = screen(arrow.getPointAtLength(0));
  const end = screen(arrow.getPointAtLength(arrow.getTotalLength()));
  const a = source.getBoundingClientRect();
  const b = target.getBoundingClientRect();
  const near = (x, y) => Math.abs(x - y) <= 2;
  return (near(start.x, a.right) || near(start.x, a.left)) && start.y >= a.top && start.y <= a.bottom
    && near(end.x, b.left) && end.y >= b.top && end.y <= b.bottom;
}
"""


def card(page: Page, task_id: str) -> Locator:
    return page.locator(f'.card[data-task="{task_id}"]')


def arrows(page: Page) -> Locator:
    return page.locator("#plan-section svg [data-from]")


def arrow_pairs(page: Page) -> set[tuple[str, str]]:
    pairs = arrows(page).evaluate_all("(all) => all.map((a) => [a.dataset.from, a.dataset.to])")
    return {(a, b) for a, b in pairs}


def state(name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){name}(\s|$)")


def test_a_chain_is_an_arrow_and_its_cards_wait_run_and_finish(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    """The planner writes t1, then t2 (20 tokens/s); t1 takes 2 s, t2 1 s."""
    stub.options.plan = CHAIN
    stub.options.role_tokens_per_s = {"planner": 20}
    stub.options.slow = {"2018 World Cup": 2.0, "president": 1.0}
    page = browser.new_page()
    ask(page, service.url, "Who led the 2018 world champion?")
    first, second = card(page, "t1"), card(page, "t2")
    # t2 is planned after t1 started and cannot start before t1 is done: it waited all along.
    expect(second).to_have_class(state("waiting"))
    expect(second.locator(".badge")).to_have_text("waiting")
    expect(first).to_have_class(state("running"))
    expect(arrows(page)).to_have_count(1)
    assert arrow_pairs(page) == {("t1", "t2")}

    expect(second).to_have_class(state("running"))
    expect(second.locator(".given")).to_have_text("given t1")
    expect(first).to_have_class(state("done"))
    expect(second).to_have_class(state("done"))
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(arrows(page)).to_have_count(1)
    page.wait_for_function(ARROW_JOINS, arg=["t1", "t2"])
    a, b = first.bounding_box(), second.bounding_box()
    assert a is not None and b is not None
    assert b["x"] >= a["x"] + a["width"], "t2 is in a column right of t1's"

    # On a phone the columns stack, and the arrow is drawn again where the cards are now.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(ARROW_JOINS, arg=["t1", "t2"])
    a, b = first.bounding_box(), second.bounding_box()
    assert a is not None and b is not None
    assert b["y"] >= a["y"] + a["height"], "t2 is below t1"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_task_whose_dependency_failed_is_shown_failed(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.plan = [*CHAIN, {"id": "t3", "question": "What is the capital of France?", "depends_on": []}]
    stub.inject(
        "worker", Fault(status=500, match="2018 World Cup"), Fault(status=500, match="2018 World Cup")
    )
    page = browser.new_page()
    ask(page, service.url, "Who led the 2018 world champion?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(card(page, "t1")).to_have_class(state("failed"))
    expect(card(page, "t3")).to_have_class(state("done"))
    blocked = card(page, "t2")
    expect(blocked).to_have_class(state("failed"))
    expect(blocked.locator(".badge")).to_have_text("failed")
    expect(blocked.locator(".e")).to_have_text("dependency t1 failed")
    expect(blocked.locator(".given")).to_have_text("")  # it never ran
    assert arrow_pairs(page) == {("t1", "t2")}


def test_a_reload_draws_the_finished_graph_again(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.plan = [
        {"id": "t1", "question": "Which country won the 2018 World Cup?", "depends_on": []},
        {"id": "t2", "question": "Which country won the 2014 World Cup?", "depends_on": []},
        {"id": "t3", "question": "Who were their presidents then?", "depends_on": ["t1", "t2"]},
        {"id": "t4", "question": "Which of them was older?", "depends_on": ["t3"]},
    ]
    page = browser.new_page()
    ask(page, service.url, "Compare the presidents of the last two world champions.")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)

    page.reload()
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    expect(page.locator(".card.done")).to_have_count(4)
    expect(arrows(page)).to_have_count(3)
    assert arrow_pairs(page) == {("t1", "t3"), ("t2", "t3"), ("t3", "t4")}
    for pair in [["t1", "t3"], ["t2", "t3"], ["t3", "t4"]]:
        page.wait_for_function(ARROW_JOINS, arg=pair)
    expect(card(page, "t3").locator(".given")).to_have_text("given t1, t2")
    boxes = {t: card(page, t).bounding_box() for t in ["t1", "t2", "t3", "t4"]}
    x = {t: box["x"] for t, box in boxes.items() if box is not None}
    assert x["t1"] == x["t2"] < x["t3"] < x["t4"], "one column per depth"


PRICES = {"planner": (3.0, 15.0), "worker": (0.5, 2.0), "critic": (1.0, 4.0), "synthesizer": (3.0, 15.0)}
"""USD per million input and output tokens, per role's stub model."""


def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "".join(f"{model_name(role)}: {{input: {i}, output: {o}}}\n" for role, (i, o) in PRICES.items())
    )
    return path


def stored(service_url: str, page: Page) -> dict[str, Any]:
    """The result of the run the page shows (its id is in the URL), as the API returns it."""
    run_id = page.url.split("#run=")[1]
    result: dict[str, Any] = view(service_url, run_id)["result"]
    return result


def dollars(cost: float) -> str:
    return f"${cost:.6f}"


def test_cost_is_shown_with_prices(
    browser: BrowserContext, stub: StubBackend, settings: Settings, tmp_path: Path
) -> None:
    priced = settings.model_copy(update={"prices_file": prices_file(tmp_path)})
    with Service(priced, stub_backend(stub)) as service:
        page = browser.new_page()
        ask(page, service.url, "Why is the sky blue?")
        expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
        result = stored(service.url, page)
    assert result["usage"]["cost_usd"] > 0
    expect(page.locator("#usage-summary th.cost")).to_be_visible()
    expect(page.locator("#u-cost")).to_have_text(dollars(result["usage"]["cost_usd"]))
    expect(page.locator("#usage-nodes th.cost")).to_be_visible()
    for role in ROLES:
        cost = page.locator(f'#usage-nodes tr[data-node="{role}"] td.cost')
        expect(cost).to_have_text(dollars(result["by_node"][role]["cost_usd"]))
    expect(page.locator("#repairs-section")).to_be_hidden()


def test_no_cost_is_shown_without_prices(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    assert stored(service.url, page)["usage"]["cost_usd"] is None
    expect(page.locator("#usage-nodes tbody tr")).to_have_count(4)
    expect(page.locator("#usage-section .cost")).to_have_count(3)  # the headers and the total, hidden
    for cost in page.locator("#usage-section .cost").all():
        expect(cost).to_be_hidden()
    expect(page.locator("#usage-section")).not_to_contain_text("$")


def unreported(text: str) -> Fault:
    """A worker's answer with no usage report, streamed or not."""
    base = {"id": "chatcmpl-nousage", "created": 0, "model": model_name("worker")}
    reply = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    chunks = [
        {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": end}],
        }
        for delta, end in [({"content": text}, None), ({}, "stop")]
    ]
    stream = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return Fault(status=200, raw=json.dumps(reply), stream_raw=stream)


def test_counts_that_are_not_exact_say_estimated_and_why(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.inject("worker", unreported("An answer the backend never reported the usage of."))
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    usage = stored(service.url, page)["usage"]
    assert usage["estimated"] is True
    assert usage["input_tokens_exact"] is False  # the stub's models are not counted by cl100k
    notes = page.locator("#u-notes li")
    expect(notes).to_have_text(
        [
            re.compile(
                r"^input and reasoning: estimated\. The question's tokens are counted here with a local"
            ),
            re.compile(
                r"^total: estimated\. Some calls reported no usage: 1 answered without a usage report"
            ),
        ]
    )
    expect(page.locator("#u-notes")).not_to_contain_text("Exact counts")
    for cell in ["#u-input", "#u-reasoning", "#u-total"]:
        expect(page.locator(cell)).to_have_text(re.compile(r"^\d+estimated$"))
    expect(page.locator("#u-output")).to_have_text(str(usage["output_tokens"]))
    worker = page.locator('#usage-nodes tr[data-node="worker"] td')
    planner = page.locator('#usage-nodes tr[data-node="planner"] td')
    expect(worker.nth(4)).to_have_text(re.compile(r"^\d+estimated$"))
    expect(planner.nth(4)).to_have_text(re.compile(r"^\d+$"))


def test_a_repaired_plan_is_listed_under_repairs(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.planner_reply = "Sorry, I cannot make a plan for that."
    page = browser.new_page()
    ask(page, service.url, "Why is the sky blue?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    fallbacks = stored(service.url, page)["fallbacks"]
    assert any(f["kind"] == "single_subquestion" for f in fallbacks)
    expect(page.locator("#repairs-section")).to_be_visible()
    expect(page.locator("#repairs li")).to_have_text(
        [f"{f['node']} · {f['kind']}{f['detail']}" for f in fallbacks]
    )
    expect(page.locator("#repairs")).to_contain_text("no usable plan")


def test_a_run_resumed_on_another_replica_shows_its_resume_and_wall_time(
    browser: BrowserContext, four_parts: StubBackend, tmp_path: Path, database: str, prefix: str
) -> None:
    """Replica A runs it; the page follows it on B from before A is killed (kill -9) to the end,
    after B or a third took it up. It shows the seam, the wall time from submission to end and
    the cost. Screenshots of the page at 1280 px and 390 px go to the test's tmp_path."""
    stub = four_parts
    cluster = start(stub, tmp_path, database, prefix, 2, lease_s=3.0, prices_file=prices_file(tmp_path))
    try:
        a, b = cluster.replicas
        before_submit = time.perf_counter()
        run_id = submit(a.url, BODY)
        submitted = time.perf_counter()
        page = browser.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{b.url}/#run={run_id}")
        expect(page.locator(".card.done")).to_have_count(2, timeout=20_000)
        record_status(page)
        until(lambda: len(workers_received(stub)) == 4, 10, "all four workers to be called")
        a.kill()
        stub.options.slow = {}
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done in"), timeout=40_000)
        seen_done = time.perf_counter()
        result = view(b.url, run_id)["result"]
    finally:
        cluster.kill()

    assert "Resumed after a restart (1)…" in page.evaluate("window.statuses")
    expect(page.locator("#run-note")).to_contain_text("Resumed after a restart (1)")
    steps = page.locator("#timeline li").all_inner_texts()
    assert [i for i, text in enumerate(steps) if "resumed" in text] == [steps.index("resumed (1)")]
    assert 0 < steps.index("resumed (1)") < len(steps) - 1, steps  # between the stages
    expect(page.locator("#timeline li.resumed")).to_have_count(1)

    timings = result["timings"]
    wall_s = timings["total_ms"] / 1000
    expect(page.locator("#status")).to_have_text(f"Done in {wall_s:.1f} s.")
    expect(page.locator("#run-note")).to_contain_text(f"{wall_s:.1f} s from submission to end")
    answered = max(call.finished for call in stub.calls_of("synthesizer"))  # the run's last call
    assert answered - submitted <= wall_s <= seen_done - before_submit, "wall time: submission to end"
    if "resumes" in timings:
        assert timings["resumes"] == 1

    expect(page.locator("#u-cost")).to_have_text(
        re.compile(rf"^{re.escape(dollars(result['usage']['cost_usd']))}")
    )
    expect(page.locator("#u-notes")).to_contain_text("2 cut short by a restart")
    page.screenshot(path=str(tmp_path / "page-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "page-390.png"), full_page=True)


def test_a_task_card_lists_its_tool_calls(
    browser: BrowserContext, service: Service, stub: StubBackend
) -> None:
    stub.options.plan = [
        {"id": "t1", "question": "calculate: 17 * 3", "depends_on": []},
        {"id": "t2", "question": "calculate: 1 / 0", "depends_on": []},
    ]
    page = browser.new_page()
    ask(page, service.url, "What is 17 * 3, and 1 / 0?")
    expect(page.locator("#answer")).to_have_text(ANSWER, timeout=20_000)
    first = page.locator('.card[data-task="t1"] .tools li')
    expect(first).to_have_count(1)
    expect(first).to_have_text(re.compile(r'^calculator \{"expression": "17 \* 3"\} → 51 \(\d+ ms\)$'))
    expect(first).to_have_attribute("data-outcome", "ok")
    failed = page.locator('.card[data-task="t2"] .tools li')
    expect(failed).to_have_text(re.compile(r"→ error: division by zero"))
    expect(failed).to_have_attribute("data-outcome", "error")
