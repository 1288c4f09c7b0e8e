"""API keys: with API_KEYS or API_KEYS_FILE set, every /v1 route needs ``Authorization: Bearer
<key>``, and the caller is the tenant of that key (``api.runs.tenants``)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.http.errors import ApiError
from api.runs.tenants import Caller, Tenants

bearer = HTTPBearer(auto_error=False, description="An API key of API_KEYS or API_KEYS_FILE (when set).")


async def get_tenants(request: Request) -> Tenants:
    tenants: Tenants = request.app.state.tenants
    return tenants


TenantsDep = Annotated[Tenants, Depends(get_tenants)]


def invalid_key() -> ApiError:
    """The answer to a request without a known key, where keys are required."""
    return ApiError(
        401,
        "a valid API key is required: send Authorization: Bearer <key>",
        type="authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer_caller(tenants: Tenants, authorization: str) -> Caller | None:
    """The caller of an ``Authorization`` header's value; None if keys are required and it holds
    no known key (for what is not a FastAPI route: the MCP mount)."""
    if not tenants.enabled:
        return Caller()
    scheme, _, token = authorization.partition(" ")
    tenant = tenants.identify(token.strip()) if scheme.lower() == "bearer" else None
    return Caller(tenant) if tenant is not None else None


async def authenticate(
    tenants: TenantsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller; 401 without a known key when keys are required."""
    if not tenants.enabled:
        return Caller()
    tenant = tenants.identify(credentials.credentials) if credentials is not None else None
    if tenant is None:
        raise invalid_key()
    return Caller(tenant)


Authenticated = Depends(authenticate)
CallerDep = Annotated[Caller, Depends(authenticate)]
