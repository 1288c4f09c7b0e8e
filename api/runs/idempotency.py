"""Idempotency-Key (IETF httpapi draft, as payment APIs use it): a client that retries a POST
that creates a run, with the same key, gets the run its first try made, on any replica, for
``IDEMPOTENCY_TTL_S``; the same key with another request is a Conflict."""

import hashlib

from pydantic import BaseModel

from api.runs.tenants import Caller
from api.storage.interface import IdempotencyKey


def idempotency_key(caller: Caller, key: str | None, route: str, body: BaseModel) -> IdempotencyKey | None:
    """The key as stored: hashed with the caller's key hash, and the request's fingerprint."""
    if key is None:
        return None
    scope = hashlib.sha256(f"{caller.key_hash or ''}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(f"{route}\n{body.model_dump_json()}".encode()).hexdigest()
    return IdempotencyKey(scope, fingerprint)
