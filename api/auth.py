"""API keys: with API_KEYS set, every /v1 route needs ``Authorization: Bearer <key>``."""

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SettingsDep
from api.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="One of the keys in API_KEYS (when it is set).")


def _matches(token: str, keys: list[str]) -> bool:
    """Compare against every key in constant time, without stopping at the first match."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    keys = settings.keys
    if not keys:
        return
    if credentials is None or not _matches(credentials.credentials, keys):
        raise ApiError(
            401,
            "a valid API key is required: send Authorization: Bearer <key>",
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authenticated = Depends(require_api_key)


def key_hash(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    settings: SettingsDep,
) -> str | None:
    """Who is asking, for accounting: the SHA-256 of their API key (the key itself is never
    stored); None without API_KEYS."""
    if not settings.keys or credentials is None:
        return None
    return hashlib.sha256(credentials.credentials.encode()).hexdigest()


CallerDep = Annotated[str | None, Depends(key_hash)]
