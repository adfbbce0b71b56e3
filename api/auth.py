"""Bearer API keys → tenant. With no API_KEYS configured, everyone is the anonymous tenant."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from shared.config import ANONYMOUS_TENANT, Settings
from shared.logs import bind

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description="An API key from API_KEYS, sent as `Authorization: Bearer <key>`.",
)


def tenant_for_key(given: str, tenants_by_key: Mapping[str, str]) -> str | None:
    """Compare against every key in constant time, so timing reveals neither key nor match."""
    found: str | None = None
    for key, tenant in tenants_by_key.items():
        if hmac.compare_digest(given.encode(), key.encode()):
            found = tenant
    return found


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The caller's tenant, or 401."""
    settings: Settings = request.app.state.settings
    if not settings.tenants_by_key:
        bind(tenant=ANONYMOUS_TENANT)
        return ANONYMOUS_TENANT
    given = credentials.credentials if credentials else ""
    tenant = tenant_for_key(given, settings.tenants_by_key) if given else None
    if tenant is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    bind(tenant=tenant)  # the request's log records carry it from here on
    return tenant
