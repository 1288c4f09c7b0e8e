"""What the caller's own API key has spent: runs, tokens and cost per day."""

import re
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.http.auth import CallerDep, TenantsDep
from api.http.deps import StoreDep
from api.http.errors import ApiError, documented
from api.http.schemas import KeyUsage, KeyUsageDay

router = APIRouter(prefix="/v1", tags=["usage"])

DEFAULT_DAYS = 30
MAX_DAYS = 366
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    """Only a date as the document states it (``format: date``), not the other forms pydantic
    reads as one (a Unix time, ``0``)."""
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("must be a date, YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


@router.get("/usage", responses=documented(400, 401, 404, 422, 503))
async def usage(
    store: StoreDep,
    caller: CallerDep,
    tenants: TenantsDep,
    key: Annotated[
        str | None, Query(max_length=100, description="a key's name: an admin key's question")
    ] = None,
    since: Annotated[Day | None, Query(description="first day (UTC), default 30 days before until")] = None,
    until: Annotated[Day | None, Query(description="last day (UTC), included; default today")] = None,
) -> KeyUsage:
    """Runs, tokens and cost per day for the key this request is made with (runs are accounted
    to a hash of the key, never the key itself), or, for an admin key, for the key named by
    ``key``. Without API keys, the runs made without one.

    `since` after `until`, or more than 366 days, is 400 `invalid_range`."""
    whose = caller.tenant
    if key is not None and (whose is None or key != whose.name):
        whose = tenants.named(key) if caller.sees_all else None
        if whose is None:
            raise ApiError(404, f"no API key is named {key!r}", param="key", code="key_not_found")
    last = until or datetime.now(UTC).date()
    first = since or date.fromordinal(max(1, last.toordinal() - (DEFAULT_DAYS - 1)))
    if first > last:
        raise ApiError(400, "since is after until", param="since", code="invalid_range")
    if (last - first).days >= MAX_DAYS:
        raise ApiError(400, f"at most {MAX_DAYS} days at a time", param="since", code="invalid_range")
    days = await store.usage(whose.key_hash if whose else None, first.isoformat(), last.isoformat())
    costs = [d.cost_usd for d in days if d.cost_usd is not None]
    return KeyUsage(
        key=whose.name if whose else None,
        since=first.isoformat(),
        until=last.isoformat(),
        days=[
            KeyUsageDay(day=d.day, runs=d.runs, total_tokens=d.total_tokens, cost_usd=d.cost_usd)
            for d in days
        ],
        runs=sum(d.runs for d in days),
        total_tokens=sum(d.total_tokens for d in days),
        cost_usd=round(sum(costs), 10) if costs else None,
    )
