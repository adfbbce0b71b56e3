"""Bearer API keys → the Caller: a bootstrap key from API_KEYS (its tenant, no key id), or a
key made at run time (`ck_…`, looked up by its keyed hash through shared/key_service.py's
KeyResolver: its tenant, id, limits and default priority). An unknown, revoked or expired key
answers 401. With neither API_KEYS nor ADMIN_API_KEYS configured, everyone is the anonymous
tenant (run-time keys can only be made with an admin key, so there are none to honour).

Wrong keys are counted per client address (AUTH_FAILURE_LIMIT); past the limit, every request
from that address that sends a key answers 429, right key or not, so guessing learns nothing
until the window has room again (a `ck_` key is not even looked up then)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError, rate_limited
from shared.config import ANONYMOUS_TENANT, Settings
from shared.keys import Caller, is_runtime_secret
from shared.logs import bind

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from api.ratelimit import TenantRateLimiter
    from shared.services import Services

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description="An API key (from API_KEYS, or a `ck_…` key made with POST /v1/admin/keys), "
    "sent as `Authorization: Bearer <key>`.",
)


def tenant_for_key(given: str, tenants_by_key: Mapping[str, str]) -> str | None:
    """Compare against every key in constant time, so timing reveals neither key nor match."""
    found: str | None = None
    for key, tenant in tenants_by_key.items():
        if hmac.compare_digest(given.encode(), key.encode()):
            found = tenant
    return found


def anonymous(settings: Settings) -> bool:
    """No keys of any kind configured: one anonymous tenant, no authentication."""
    return not settings.tenants_by_key and not settings.admin_api_keys


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid API key is required: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def caller_for_key(request: Request, given: str) -> Caller | None:
    """The Caller `given` authenticates, or None (counted as a failure). A bootstrap key is
    compared in memory; a `ck_` key is looked up only while the address is under
    AUTH_FAILURE_LIMIT (429 otherwise, as for every key)."""
    settings: Settings = request.app.state.settings
    tenant = tenant_for_key(given, settings.tenants_by_key)
    services: Services = request.app.state.services
    caller: Caller | None = None
    if tenant is not None:
        caller = Caller(tenant)
    elif services.keys is not None and is_runtime_secret(given):
        await throttle_failures(request, failed=False)
        try:
            caller = await services.keys.resolver.resolve(given)
        except Exception:  # the store is unreachable: refuse, but not as a wrong key
            log.warning("cannot look up an API key", exc_info=True)
            message = "the API key cannot be checked just now; retry later"
            raise ApiError(503, "unavailable", message, headers={"Retry-After": "5"}) from None
        if caller is not None:
            return caller  # tested against the throttle already
    await throttle_failures(request, failed=caller is None)
    return caller


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The caller's tenant, or 401."""
    settings: Settings = request.app.state.settings
    if anonymous(settings):
        bind(tenant=ANONYMOUS_TENANT)
        request.state.caller = Caller(ANONYMOUS_TENANT)
        return ANONYMOUS_TENANT
    given = credentials.credentials if credentials else ""
    caller = await caller_for_key(request, given) if given else None
    if caller is None:
        raise unauthorized()
    bind(tenant=caller.tenant, key_id=caller.key_id)  # the request's log records carry them
    request.state.caller = caller
    return caller.tenant


async def current_caller(request: Request, tenant: Annotated[str, Depends(authenticate)]) -> Caller:
    """The authenticated caller: its tenant, key id, limits and default priority."""
    caller: Caller = request.state.caller
    return caller


def client_address(request: Request) -> str:
    """The address failures are counted against: the ASGI client host (API Gateway's source IP
    under Mangum; X-Forwarded-For only from FORWARDED_ALLOW_IPS proxies), an IPv6 one as its /64
    (one host's usual share)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def throttle_failures(request: Request, *, failed: bool) -> None:
    """Count a wrong key against the client's address; 429 once the address is over
    AUTH_FAILURE_LIMIT, for a wrong key and a right one alike."""
    throttle: TenantRateLimiter = request.app.state.auth_throttle
    key = f"auth:{client_address(request)}"
    wait_s = await (throttle.hit(key) if failed else throttle.test(key))
    if wait_s is None:
        return
    raise rate_limited("too many failed authentications from this address", wait_s)
