"""Hard caps and token budgets: a run never spends more than it was given."""

import asyncio

import httpx
import openai
import pytest

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import StubBackend


@pytest.mark.parametrize("budget", [900, 1500, 3000, 6000, 20000])
def test_total_tokens_never_exceed_the_budget(client: httpx.Client, stub: StubBackend, budget: int) -> None:
    stub.options.fill_max_tokens = True  # every call spends its whole output cap
    stub.options.subtasks = 4
    stub.options.revise_first_round = True
    response = client.post(
        "/v1/reason",
        json={"question": "Explain the causes of the French revolution.", "token_budget": budget},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["usage"]["total_tokens"] <= budget
    assert result["usage"]["total_tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)
    assert result["answer"], "the run still answers"
    finished = ("partial", "completed") if result["budget_exhausted"] else ("completed",)
    assert result["status"] in finished, (result["status"], result["budget_exhausted"])


def test_a_tight_budget_plans_smaller(client: httpx.Client, stub: StubBackend) -> None:
    stub.options.subtasks = 8
    stub.options.fill_max_tokens = True
    tight = client.post("/v1/reason", json={"question": "Q?", "max_subtasks": 8, "token_budget": 2500}).json()
    sent_caps = [c.body.get("max_tokens") for c in stub.calls]
    assert len(tight["plan"]) < 8
    assert tight["critique"] == []
    assert max(sent_caps) < 512
    assert tight["usage"]["total_tokens"] <= 2500


def test_openai_max_completion_tokens_caps_reasoning_plus_output(service: Service, stub: StubBackend) -> None:
    stub.options.fill_max_tokens = True
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    completion = sdk.chat.completions.create(
        model="reasoner",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        max_completion_tokens=2000,
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 2000
    assert completion.choices[0].message.content


def test_model_calls_per_run_are_capped(stub: StubBackend, settings: Settings) -> None:
    capped = settings.model_copy(update={"max_calls_per_run": 4})
    stub.options.subtasks = 6
    with (
        Service(capped, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=30) as http,
    ):
        result = http.post("/v1/reason", json={"question": "Q?", "max_subtasks": 6}).json()
    assert len(stub.calls) <= 4
    assert result["budget_exhausted"] is True
    assert result["status"] == "partial"


def test_requests_cannot_exceed_the_hard_limits(stub: StubBackend, settings: Settings) -> None:
    limited = settings.model_copy(
        update={"subtasks_limit": 3, "revisions_limit": 1, "max_output_tokens": 100}
    )
    stub.options.subtasks = 10
    stub.options.critic_reply = '{"verdicts": [{"task_id": "t1", "verdict": "revise", "feedback": "x"}]}'
    with (
        Service(limited, stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=30) as http,
    ):
        result = http.post(
            "/v1/reason", json={"question": "Q?", "max_subtasks": 64, "max_revisions": 10}
        ).json()
    assert len(result["plan"]) == 3
    assert len(stub.calls_of("critic")) == 1
    assert all(c.body["max_tokens"] <= 100 for c in stub.calls)


def test_beyond_the_run_limit_is_429_with_retry_after(stub: StubBackend, settings: Settings) -> None:
    one = settings.model_copy(update={"max_active_runs": 1, "max_queued_runs": 1})
    stub.options.latency_s = 0.5

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            return await asyncio.gather(
                *[http.post("/v1/runs", json={"question": f"Q{i}?"}) for i in range(4)]
            )

    with Service(one, stub_backend(stub)) as service:
        responses = asyncio.run(burst(service.url))
        statuses = sorted(r.status_code for r in responses)
        refused = [r for r in responses if r.status_code == 429]
        with httpx.Client(base_url=service.url) as http:
            accepted = [r.json()["run_id"] for r in responses if r.status_code == 202]
            for run_id in accepted:
                with http.stream("GET", f"/v1/runs/{run_id}/events") as events:
                    for _ in events.iter_lines():
                        pass
            final = [http.get(f"/v1/runs/{run_id}").json()["status"] for run_id in accepted]
    assert statuses == [202, 202, 429, 429]
    assert refused[0].headers["retry-after"] == "5"
    assert refused[0].json()["error"]["code"] == "too_many_runs"
    assert final == ["completed", "completed"]
