"""Quotas per API key: what is left of a key's limits, or the QuotaExceeded that says which one
is spent.

Pure: the store reads a key's ``Spend`` in the same transaction that stores its new run (so
two requests racing on any replica cannot both take the last of a quota), and these functions
decide. A run's token and cost budgets are then capped by what is left (``api.runs.admission``), and
the capped budgets are stored with the run: an unfinished run counts against the day's quota
with all it may still spend, a finished one with what it spent.
"""

from dataclasses import dataclass

from api.runs.errors import QuotaExceeded
from api.runs.tenants import Limits
from api.storage.interface import Spend


def tokens_spent(day_ends_in_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        "tokens_per_day_exceeded",
        "this API key's tokens_per_day is spent (or too little is left for a run); it renews at 00:00 UTC",
        day_ends_in_s,
    )


def cost_spent(day_ends_in_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        "cost_usd_per_day_exceeded",
        "this API key's cost_usd_per_day is spent (or too little is left for a run); it renews at 00:00 UTC",
        day_ends_in_s,
    )


@dataclass(frozen=True)
class Quota:
    """What is left today of a key's daily quotas (None: no such limit)."""

    tokens: int | None
    cost_usd: float | None
    renews_in_s: float

    @property
    def binding(self) -> bool:
        return self.tokens is not None or self.cost_usd is not None


def allowance(limits: Limits, spend: Spend) -> Quota:
    """What a new run of the key may spend at most; QuotaExceeded if a limit is spent."""
    if limits.requests_per_minute is not None and spend.requests >= limits.requests_per_minute:
        raise QuotaExceeded(
            "requests_per_minute_exceeded",
            f"this API key may start {limits.requests_per_minute} runs a minute",
            spend.window_frees_in_s,
        )
    tokens = cost = None
    if limits.tokens_per_day is not None:
        tokens = limits.tokens_per_day - spend.tokens
        if tokens <= 0:
            raise tokens_spent(spend.day_ends_in_s)
    if limits.cost_usd_per_day is not None:
        cost = limits.cost_usd_per_day - spend.cost_usd
        if cost <= 0:
            raise cost_spent(spend.day_ends_in_s)
    return Quota(tokens, cost, spend.day_ends_in_s)
