"""Money: with a price file, every result says what each node cost (tokens times prices, checked
for every node against the stub's own record), the OpenAI route reports ``cost`` as OpenRouter
does, and ``cost_budget_usd`` holds like ``token_budget``."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import ROLES, StubBackend, model_name

PRICES = {
    "planner": (3.0, 15.0),
    "worker": (0.5, 2.0),
    "critic": (1.0, 4.0),
    "synthesizer": (3.0, 15.0),
}
"""USD per million input and output tokens, per role's stub model."""


@pytest.fixture
def priced(stub: StubBackend, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    lines = [
        f"{model_name(role)}: {{input: {i}, cached_input: {i / 10}, output: {o}}}"
        for role, (i, o) in PRICES.items()
    ]
    prices = tmp_path / "prices.yaml"
    prices.write_text("\n".join(lines) + "\n")
    with (
        Service(settings.model_copy(update={"prices_file": prices}), stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=60) as http,
    ):
        yield http


def test_every_node_costs_its_tokens_times_its_prices(priced: httpx.Client, stub: StubBackend) -> None:
    stub.options.revise_first_round = True
    result = priced.post("/v1/reason", json={"question": "Why do leaves fall?", "max_revisions": 1}).json()
    total = 0.0
    for role in ROLES:
        calls = stub.calls_of(role)
        assert calls, role
        price_in, price_out = PRICES[role]
        expected = sum(c.prompt_tokens * price_in + c.completion_tokens * price_out for c in calls) / 1e6
        assert result["by_node"][role]["cost_usd"] == pytest.approx(expected, abs=1e-9), role
        total += expected
    assert result["usage"]["cost_usd"] == pytest.approx(total, abs=1e-9)


def test_the_openai_route_reports_cost(priced: httpx.Client) -> None:
    body = {"model": "reasoner", "messages": [{"role": "user", "content": "Why is the sea salty?"}]}
    usage = priced.post("/v1/chat/completions", json=body).json()["usage"]
    assert usage["cost"] > 0


@pytest.mark.parametrize("dollars", [0.03, 0.1, 0.5])
def test_a_cost_budget_is_never_exceeded(priced: httpx.Client, stub: StubBackend, dollars: float) -> None:
    stub.options.fill_max_tokens = True  # every call spends its whole output cap
    stub.options.subtasks = 4
    stub.options.revise_first_round = True
    response = priced.post(
        "/v1/reason",
        json={"question": "Explain the causes of the French revolution.", "cost_budget_usd": dollars},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert 0 < result["usage"]["cost_usd"] <= dollars
    assert result["answer"], "the run still answers"


@pytest.mark.parametrize("answer_tokens", [5, 60, 300])
def test_a_budget_of_twice_a_runs_cost_lets_the_same_run_complete_whole(
    priced: httpx.Client, stub: StubBackend, answer_tokens: int
) -> None:
    """Each call reserves at its own model's prices, and the synthesizer is kept back what the
    answers written so far need, not their worst case: however short the answers are (the caps
    are 512), twice a run's cost buys the same run."""
    stub.options.answer_tokens = answer_tokens
    stub.options.subtasks = 4
    body = {"question": "Explain the causes of the French revolution."}
    unlimited = priced.post("/v1/reason", json=body).json()
    cost = unlimited["usage"]["cost_usd"]
    assert unlimited["status"] == "completed" and len(unlimited["subanswers"]) == 4
    budgeted = priced.post("/v1/reason", json={**body, "cost_budget_usd": 2 * cost})
    assert budgeted.status_code == 200, budgeted.text
    result = budgeted.json()
    assert result["status"] == "completed" and not result["budget_exhausted"]
    assert [a["task_id"] for a in result["subanswers"]] == [a["task_id"] for a in unlimited["subanswers"]]
    assert all(a["status"] == "ok" for a in result["subanswers"])
    assert result["usage"]["cost_usd"] <= 2 * cost


def test_a_too_small_cost_budget_names_the_minimum_which_is_enough(
    priced: httpx.Client, stub: StubBackend
) -> None:
    stub.options.fill_max_tokens = True  # every call spends its whole output cap
    body = {"question": "Explain the causes of the French revolution."}
    tiny = priced.post("/v1/reason", json={**body, "cost_budget_usd": 0.0001})
    assert tiny.status_code == 400
    error = tiny.json()["error"]
    assert (error["code"], error["param"]) == ("budget_too_small", "cost_budget_usd")
    least = float(error["message"].rsplit("$", 1)[1])
    assert least > 0.0001
    response = priced.post("/v1/reason", json={**body, "cost_budget_usd": least})
    assert response.status_code == 200, response.text
    result = response.json()
    assert 0 < result["usage"]["cost_usd"] <= least
    assert result["answer"], "the run still answers"


def test_cost_budgets_that_cannot_work_are_refused(priced: httpx.Client, client: httpx.Client) -> None:
    tiny = priced.post("/v1/reason", json={"question": "Why?", "cost_budget_usd": 0.000001})
    assert tiny.status_code == 400
    assert tiny.json()["error"]["code"] == "budget_too_small"
    assert tiny.json()["error"]["param"] == "cost_budget_usd"
    unpriced = client.post("/v1/reason", json={"question": "Why?", "cost_budget_usd": 1.0})
    assert unpriced.status_code == 400
    assert unpriced.json()["error"]["code"] == "no_price"


def test_without_prices_the_cost_is_null(client: httpx.Client) -> None:
    result = client.post("/v1/reason", json={"question": "Why?"}).json()
    assert result["usage"]["cost_usd"] is None
    assert all(node["cost_usd"] is None for node in result["by_node"].values() if node["calls"])
