"""Idempotency-Key (IETF httpapi draft, as payment APIs use it): a client that retries a POST
that creates a run, with the same key, gets the run its first try made, on any replica, for
``IDEMPOTENCY_TTL_S``; the same key with another request is refused (409)."""

import hashlib
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel

from api.runs.tenants import Caller
from api.storage.interface import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
"""Set (``true``) on a response that is a replay of an earlier request's run."""

IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per logical request (e.g. a UUID): a retry with the same key "
        "returns the same run for 24 h instead of starting another",
    ),
]


def idempotency_key(caller: Caller, key: str | None, route: str, body: BaseModel) -> IdempotencyKey | None:
    """The key as stored: hashed with the caller's key hash, and the request's fingerprint."""
    if key is None:
        return None
    scope = hashlib.sha256(f"{caller.key_hash or ''}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(f"{route}\n{body.model_dump_json()}".encode()).hexdigest()
    return IdempotencyKey(scope, fingerprint)
