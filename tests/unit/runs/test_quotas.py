"""Quotas per key, as pure decisions: what is left, which limit is spent, and how a run's
budget is capped by what is left of the day."""

import pytest

from api.runs.admission import admit, granted
from api.runs.errors import QuotaExceeded, Refused
from api.runs.quotas import Quota, allowance
from api.runs.request import ReasonRequest
from api.runs.tenants import Limits
from api.settings import Settings
from api.storage.interface import Spend
from graph import Price, TokenCount
from graph.budget import smallest_budget

SETTINGS = Settings(_env_file=None, llm_base_url="http://x.invalid/v1")  # type: ignore[call-arg]
QUESTION = TokenCount(10, exact=True)


def spend(requests: int = 0, tokens: int = 0, cost: float = 0.0) -> Spend:
    return Spend(requests, window_frees_in_s=12.3, tokens=tokens, cost_usd=cost, day_ends_in_s=3600.2)


def test_what_is_left_of_each_limit() -> None:
    limits = Limits(requests_per_minute=5, tokens_per_day=10_000, cost_usd_per_day=2.0)
    assert allowance(limits, spend(4, 9_000, 1.5)) == Quota(1_000, 0.5, 3600.2)
    assert allowance(Limits(requests_per_minute=5), spend(4, 9_000, 1.5)) == Quota(None, None, 3600.2)


@pytest.mark.parametrize(
    ("used", "code", "retry_after"),
    [
        (spend(requests=5), "requests_per_minute_exceeded", "13"),
        (spend(tokens=10_000), "tokens_per_day_exceeded", "3601"),
        (spend(cost=2.5), "cost_usd_per_day_exceeded", "3601"),
    ],
)
def test_a_spent_limit_is_refused_by_name_with_when_it_renews(
    used: Spend, code: str, retry_after: str
) -> None:
    limits = Limits(requests_per_minute=5, tokens_per_day=10_000, cost_usd_per_day=2.0)
    with pytest.raises(QuotaExceeded) as raised:
        allowance(limits, used)
    assert raised.value.code == code
    assert str(raised.value.retry_after_s) == retry_after


def run(quota: Quota | None, request: ReasonRequest | None = None, **kwargs: object) -> int | None:
    ctx = admit(request or ReasonRequest(question="Q?"), SETTINGS, QUESTION, now=0.0, quota=quota, **kwargs)  # type: ignore[arg-type]
    return ctx.budget.tokens


def test_a_run_is_capped_by_what_is_left_of_the_day() -> None:
    assert run(Quota(3_000, None, 10)) == 3_000
    assert run(Quota(3_000, None, 10), ReasonRequest(question="Q?", token_budget=2_000)) == 2_000
    uncapped = run(Quota(10_000_000, None, 10))
    assert uncapped is not None and uncapped < 100_000, "a run reserves its estimate, not the whole day"
    assert run(None) is None and run(Quota(None, None, 10)) is None


def test_a_cost_quota_caps_the_tokens_at_the_dearest_price() -> None:
    prices = {"a": Price(1.0, 4.0), "b": Price(0.5, 2.0)}  # $4 per million at most: 250,000 per $1
    assert run(Quota(None, 0.01, 10), prices=prices, models=["a", "b"]) == 2_500


def test_a_quota_too_small_for_the_smallest_run_is_a_spent_quota_not_a_refusal() -> None:
    floor = smallest_budget(QUESTION.tokens)
    with pytest.raises(QuotaExceeded) as raised:
        run(Quota(floor - 1, None, 99.5))
    assert raised.value.code == "tokens_per_day_exceeded" and raised.value.retry_after_s == 100
    with pytest.raises(Refused) as own:
        run(Quota(10_000, None, 10), ReasonRequest(question="Q?", token_budget=floor - 1))
    assert not isinstance(own.value, QuotaExceeded) and own.value.code == "budget_too_small"


def test_the_stored_request_carries_the_granted_budgets() -> None:
    prices = {"m": Price(1.0, 2.0)}
    request = ReasonRequest(question="Q?", reasoning_effort="low")
    ctx = admit(
        request, SETTINGS, QUESTION, now=0.0, quota=Quota(3_000, 1.0, 10), prices=prices, models=["m"]
    )
    stored = granted(request, ctx, prices, ["m"])
    assert stored.token_budget == 3_000 and stored.cost_budget_usd == pytest.approx(3_000 * 2.0 / 1e6)
    assert stored.reasoning_effort == "low"
    again = admit(stored, SETTINGS, QUESTION, now=0.0, prices=prices, models=["m"])
    assert again.budget.tokens in (2_999, 3_000), "a resumed run is held to the same budget"
