"""Operator access: `require_admin` lets a Bearer key from ADMIN_API_KEYS through.

A tenant's key answers 403 (it is a key, just not an operator's); no key or a wrong one 401, and
wrong keys count against the address like anywhere else (AUTH_FAILURE_LIMIT). Keys are compared
in constant time. With no ADMIN_API_KEYS, nobody is an operator.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.auth import tenant_for_key, throttle_failures
from api.errors import ApiError
from shared.config import Settings
from shared.logs import bind

admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminBearer",
    bearerFormat="admin key",
    description="An operator key from ADMIN_API_KEYS, sent as `Authorization: Bearer <key>`.",
)


def is_admin_key(given: str, admin_keys: Iterable[SecretStr]) -> bool:
    """Compare against every admin key in constant time (no early exit on a match)."""
    found = False
    for key in admin_keys:
        found |= hmac.compare_digest(given.encode(), key.get_secret_value().encode())
    return found


def not_an_operator() -> ApiError:
    return ApiError(403, "forbidden", "this key is not an operator key (ADMIN_API_KEYS)")


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """An operator's request goes on; a tenant key answers 403, none or a wrong one 401."""
    settings: Settings = request.app.state.settings
    given = credentials.credentials if credentials else ""
    admin = bool(given) and is_admin_key(given, settings.admin_api_keys)
    tenant = None if admin or not given else tenant_for_key(given, settings.tenants_by_key)
    if given:
        await throttle_failures(request, failed=not admin and tenant is None)
    if admin:
        bind(tenant="admin")
        return
    if tenant is not None:
        raise not_an_operator()
    raise ApiError(
        401,
        "unauthorized",
        "an operator key is required: send 'Authorization: Bearer <admin key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


AdminDep = Depends(require_admin)
