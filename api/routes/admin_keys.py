"""/v1/admin/keys: API keys made at run time (shared/key_service.py), for admins only
(api/admin_auth.py). A key's secret is in the answer that makes or rotates it, and nowhere else."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from api.admin_auth import AdminDep
from api.deps import KeysDep
from api.errors import documented
from api.jsonbody import StrictJsonRoute
from api.routes.jobs import Cursor, invalid_cursor
from shared.errors import InvalidCursor
from shared.key_service import KeyService
from shared.keys import (
    KEY_ID_EXAMPLE,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyPublic,
    ApiKeyRecord,
    KeyCreate,
    KeyRotate,
    TenantName,
)
from shared.logs import bind

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], route_class=StrictJsonRoute)

KeyId = Annotated[str, Path(max_length=128, description="The key's id.", examples=[KEY_ID_EXAMPLE])]
TenantFilter = Annotated[
    TenantName | None, Query(description="Only this tenant's keys.", examples=["acme"])
]
Limit = Annotated[int, Query(ge=1, le=100, description="Keys on a page, 1 to 100.", examples=[20])]
# 401: no admin key; 403: a tenant's key
ADMIN_ERRORS = (401, 403, 422)
FORBIDDEN = {403: {"description": "A tenant's key, not an admin's (`forbidden`)"}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    found = documented(*codes)
    if 403 in found:
        found[403] = found[403] | FORBIDDEN[403]
    return found


async def _shown(keys: KeyService, record: ApiKeyRecord) -> ApiKeyPublic:
    [shown] = await keys.shown([record])
    return shown


async def _created(keys: KeyService, record: ApiKeyRecord, secret: str) -> ApiKeyCreated:
    return ApiKeyCreated(**(await _shown(keys, record)).model_dump(), key=secret)


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=201,
    responses={
        201: {
            "description": "Made: the answer holds its secret (`key`), shown this once",
            "headers": {
                "Location": {"description": "`/v1/admin/keys/{id}`", "schema": {"type": "string"}}
            },
        },
        **_responses(*ADMIN_ERRORS),
    },
)
async def create_key(
    admin: AdminDep, body: KeyCreate, response: Response, keys: KeysDep
) -> ApiKeyCreated:
    """Make an API key for a tenant; its secret is in this answer only."""
    record, secret = await keys.create(body)
    bind(key_id=record.id)
    response.headers["Location"] = f"/v1/admin/keys/{record.id}"
    return await _created(keys, record, secret)


@router.get("", response_model=ApiKeyPage, responses=_responses(*ADMIN_ERRORS))
async def list_keys(
    admin: AdminDep,
    keys: KeysDep,
    tenant: TenantFilter = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> ApiKeyPage:
    """List the run-time API keys (of one tenant, or all), newest first, a page at a time,
    each with what it has used this month (`usage`)."""
    try:
        found, next_cursor = await keys.list(tenant=tenant, limit=limit, cursor=cursor)
    except InvalidCursor:
        raise invalid_cursor() from None
    return ApiKeyPage(data=await keys.shown(found), next_cursor=next_cursor)


@router.get("/{key_id}", response_model=ApiKeyPublic, responses=_responses(401, 403, 404, 422))
async def get_key(admin: AdminDep, key_id: KeyId, keys: KeysDep) -> ApiKeyPublic:
    """Get one API key (never its secret), with what it has used this month (`usage`)."""
    return await _shown(keys, await keys.get(key_id))


@router.post(
    "/{key_id}/revoke", response_model=ApiKeyPublic, responses=_responses(401, 403, 404, 422)
)
async def revoke_key(admin: AdminDep, key_id: KeyId, keys: KeysDep) -> ApiKeyPublic:
    """Revoke a key: refused at once by this API process, and by every other within
    KEY_CACHE_TTL_S. Revoking it again changes nothing."""
    bind(key_id=key_id)
    return await _shown(keys, await keys.revoke(key_id))


@router.post(
    "/{key_id}/rotate",
    response_model=ApiKeyCreated,
    responses=_responses(401, 403, 404, 409, 422),
)
async def rotate_key(
    admin: AdminDep,
    key_id: KeyId,
    keys: KeysDep,
    body: Annotated[
        KeyRotate | None,
        Body(
            description="Optional: without a body, the grace period is 3600 s.",
            examples=[{"grace_period_s": 3600}],
        ),
    ] = None,
) -> ApiKeyCreated:
    """Give an active key a new secret (in this answer only); the old one keeps working for
    `grace_period_s` (default 3600), then stops. 409 for a revoked or expired key."""
    bind(key_id=key_id)
    grace = (body or KeyRotate()).grace_period_s
    record, secret = await keys.rotate(key_id, grace)
    return await _created(keys, record, secret)
