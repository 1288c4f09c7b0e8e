# ruff: noqa: RUF001  (the questions are in Cyrillic and CJK on purpose)
"""Budgets hold for any tokenizer: against backends that count 1.6x cl100k, or one token per two
characters, with long questions in mixed scripts, what the backend bills never exceeds
``token_budget``, ``cost_budget_usd``, ``max_completion_tokens`` or a key's ``tokens_per_day``,
and the run reports exactly what was billed."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.settings import Settings
from tests.conftest import Service, stub_backend
from tests.stub_backend import ROLES, StubBackend, model_name
from tests.support.runs import until

TOKENIZERS: dict[str, dict[str, float]] = {
    "1.6x-cl100k": {"bill_per_cl100k": 1.6},
    "2-chars-per-token": {"chars_per_token": 2.0},
}
"""Stub options: a tokenizer that counts 1.6 tokens per cl100k token, and one that counts a token
for every two characters (about 2.2x cl100k on English, 1.1x on Russian, 0.4x on Chinese)."""

QUESTIONS = (
    "Сравните причины Великой французской революции 1789 года и Синьхайской революции 1911 года: "
    "какую роль сыграли финансовый кризис монархии, неурожаи и голод, идеи Просвещения, армия и "
    "городская беднота? Почему в обоих случаях старый порядок рухнул так быстро, хотя казался прочным? "
    "请比较一七八九年法国大革命和一九一一年辛亥革命的起因：君主制的财政危机、饥荒、启蒙思想和军队各起了什么作用？"
    "革命之后，两个国家的政治制度、土地所有权和普通百姓的生活发生了哪些变化？为什么两次革命之后都出现了强人统治？"
    "フランス革命と辛亥革命の後、なぜ両国とも軍事的な指導者が権力を握ったのか、日本の明治維新とも比べて説明してください。"
    "Answer for a reader who knows neither country well, and say which causes the two had in common.",
    "Объясните, как устроены приливы и отливы: почему их два в сутки, почему высота прилива меняется "
    "в течение месяца и почему в заливе Фанди она достигает шестнадцати метров, а в Средиземном море "
    "почти незаметна? Какую роль играют Луна, Солнце, форма берега и резонанс? "
    "潮汐是怎样形成的？为什么钱塘江大潮每年农历八月最壮观？月球和太阳的引力、地球自转以及海湾的形状分别起了什么作用？"
    "潮汐能发电站是怎样利用这种能量的，它对环境有什么影响？"
    "Also explain why tides slow the Earth's rotation and move the Moon away, with rough numbers.",
)


ENGLISH = (
    "Explain the causes of the French Revolution of 1789: the fiscal crisis of the monarchy, the bad "
    "harvests of 1788, the ideas of the Enlightenment, the army and the urban poor, and why the old order "
    "collapsed so quickly although it had seemed solid. Compare it with the Russian revolution of 1917 "
    "(Февральская и Октябрьская революции) and the Chinese one of 1911 (辛亥革命), and say which causes the "
    "three had in common, which they did not, and what became of the peasants' land in each."
)
"""Mostly Latin text: where counting a token per two characters bills most (about 2.2x cl100k)."""


@pytest.fixture(params=list(TOKENIZERS))
def tokenizer(request: pytest.FixtureRequest, stub: StubBackend) -> str:
    for option, value in TOKENIZERS[request.param].items():
        setattr(stub.options, option, value)
    stub.options.fill_max_tokens = True  # every call spends its whole output cap
    stub.options.subtasks = 4
    stub.options.revise_first_round = True
    return str(request.param)


def billed(stub: StubBackend) -> int:
    return sum(c.prompt_tokens + c.completion_tokens for c in stub.calls)


def last_usage(http: httpx.Client, stub: StubBackend) -> dict[str, Any]:
    """The usage of the service's latest run, which must be exactly what the stub billed."""
    run_id = http.get("/v1/runs", params={"limit": 1}).json()["data"][0]["run_id"]
    usage: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()["result"]["usage"]
    assert usage["total_tokens"] == billed(stub)
    return usage


def refused(response: httpx.Response, stub: StubBackend) -> bool:
    """A budget too small for the question is refused before any call."""
    if response.status_code != 400:
        return False
    assert response.json()["error"]["code"] == "budget_too_small", response.text
    assert stub.calls == []
    return True


@pytest.mark.parametrize("budget", [2500, 3000, 4000, 5000, 6500, 9000])
def test_a_token_budget_holds_for_any_tokenizer(
    client: httpx.Client, stub: StubBackend, tokenizer: str, budget: int
) -> None:
    # The first question meets models that never reported; the next ones, models that did.
    answered = 0
    for question in (*QUESTIONS, ENGLISH):
        stub.reset()
        response = client.post(
            "/v1/reason", json={"question": question, "max_revisions": 1, "token_budget": budget}
        )
        if refused(response, stub):
            continue
        usage = last_usage(client, stub)
        assert usage["total_tokens"] <= budget, (tokenizer, budget, usage)
        answered += response.status_code == 200 and bool(response.json()["answer"])
    assert answered >= (1 if budget < 5000 else 3)


PRICES = {role: (10.0, 10.0) for role in ROLES}
"""USD per million tokens, in and out, the same for every model: the cost budget is a token budget."""


@pytest.fixture
def priced(stub: StubBackend, settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    lines = [f"{model_name(role)}: {{input: {i}, output: {o}}}" for role, (i, o) in PRICES.items()]
    prices = tmp_path / "prices.yaml"
    prices.write_text("\n".join(lines) + "\n")
    with (
        Service(settings.model_copy(update={"prices_file": prices}), stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, timeout=60) as http,
    ):
        yield http


@pytest.mark.parametrize("dollars", [0.03, 0.04, 0.065])
def test_a_cost_budget_holds_for_any_tokenizer(
    priced: httpx.Client, stub: StubBackend, tokenizer: str, dollars: float
) -> None:
    answered = 0
    for question in (*QUESTIONS, ENGLISH):
        stub.reset()
        response = priced.post(
            "/v1/reason", json={"question": question, "max_revisions": 1, "cost_budget_usd": dollars}
        )
        if refused(response, stub):
            continue
        usage = last_usage(priced, stub)
        spent = sum(
            c.prompt_tokens * PRICES[c.role][0] + c.completion_tokens * PRICES[c.role][1] for c in stub.calls
        )
        assert usage["cost_usd"] == pytest.approx(spent / 1e6, abs=1e-9)
        assert spent / 1e6 <= dollars, (tokenizer, dollars, spent / 1e6)
        answered += response.status_code == 200
    assert answered >= 1


@pytest.mark.parametrize("cap", [2500, 3500, 5000])
def test_max_completion_tokens_holds_for_any_tokenizer(
    client: httpx.Client, stub: StubBackend, tokenizer: str, cap: int
) -> None:
    answered = 0
    for question in (*QUESTIONS, ENGLISH):
        stub.reset()
        body = {
            "model": "reasoner",
            "messages": [{"role": "user", "content": question}],
            "max_completion_tokens": cap,
        }
        response = client.post("/v1/chat/completions", json=body)
        if refused(response, stub):
            continue
        usage = last_usage(client, stub)
        completion = usage["total_tokens"] - usage["input_tokens"]
        assert completion <= cap, (tokenizer, cap, usage)
        if response.status_code == 200:
            assert response.json()["usage"]["completion_tokens"] == completion
            answered += 1
    assert answered >= 1


@pytest.mark.parametrize("day", [7000, 12000])
def test_a_daily_token_quota_holds_for_any_tokenizer(
    stub: StubBackend, settings: Settings, tmp_path: Path, tokenizer: str, day: int
) -> None:
    """Runs until the key's day is spent: each is capped by what is left of it, as by a budget."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(f'keys:\n  - {{name: alice, key: "sk-alice-1f3a9c", tokens_per_day: {day}}}\n')
    with (
        Service(settings.model_copy(update={"api_keys_file": keys}), stub_backend(stub)) as service,
        httpx.Client(base_url=service.url, headers={"Authorization": "Bearer sk-alice-1f3a9c"}) as alice,
    ):
        for question in (*QUESTIONS, ENGLISH) * 3:
            response = alice.post("/v1/reason", json={"question": question, "max_revisions": 1}, timeout=60)
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "tokens_per_day_exceeded"
                break
        else:
            pytest.fail("the day's quota never ran out")
        # A run's final state is committed just after its answer is sent: wait for the last one.
        until(
            lambda: alice.get("/v1/usage").json()["total_tokens"] == billed(stub),
            10,
            "the usage to be committed",
        )
    assert billed(stub) <= day, (tokenizer, day, billed(stub))
