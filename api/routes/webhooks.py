"""/v1/webhook-secret: the caller's Standard Webhooks signing secret."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ServicesDep, TenantDep
from api.errors import documented
from api.jsonbody import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=StrictJsonRoute)


class WebhookSecret(BaseModel):
    secret: str


@router.get("/webhook-secret", response_model=WebhookSecret, responses=documented(401))
async def get_webhook_secret(services: ServicesDep, tenant: TenantDep) -> WebhookSecret:
    """The `whsec_` secret this key's webhooks are signed with (verify with standardwebhooks)."""
    return WebhookSecret(secret=services.webhook_secret(tenant))
