"""Admin access (/v1/admin/…, and the operator console later): a key from ADMIN_API_KEYS.

No key, or a key that is nobody's: 401. A tenant's key (API_KEYS or a run-time `ck_` key): 403,
it is known but not an admin's. With no ADMIN_API_KEYS configured there is no admin access at
all (401 for everyone). Wrong keys count against the client address as on every route
(AUTH_FAILURE_LIMIT)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import caller_for_key, throttle_failures
from api.errors import ApiError
from shared.config import Settings
from shared.logs import bind

admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminBearer",
    bearerFormat="admin key",
    description="A key from ADMIN_API_KEYS, sent as `Authorization: Bearer <key>`.",
)


@dataclass(frozen=True)
class Admin:
    """An authenticated admin: which of the ADMIN_API_KEYS (its 1-based position), for logs."""

    label: str


def admin_for_key(given: str, admin_keys: list[str]) -> Admin | None:
    """Compare against every admin key in constant time."""
    found: Admin | None = None
    for n, key in enumerate(admin_keys, start=1):
        if hmac.compare_digest(given.encode(), key.encode()):
            found = Admin(f"admin#{n}")
    return found


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> Admin:
    """The admin, or 401 (no key, or nobody's) / 403 (a tenant's key)."""
    settings: Settings = request.app.state.settings
    given = credentials.credentials if credentials else ""
    keys = [key.get_secret_value() for key in settings.admin_api_keys]
    admin = admin_for_key(given, keys) if given else None
    if admin is not None:
        await throttle_failures(request, failed=False)
        bind(admin=admin.label)
        return admin
    if given and await caller_for_key(request, given) is not None:
        message = "this API key is a tenant's: the admin API needs an admin key"
        raise ApiError(403, "forbidden", message)
    raise ApiError(
        401,
        "unauthorized",
        "an admin key (ADMIN_API_KEYS) is required: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


AdminDep = Annotated[Admin, Depends(require_admin)]
