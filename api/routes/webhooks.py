"""/v1/webhook-secret: the caller's Standard Webhooks signing secret."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ServicesDep, TenantDep
from api.errors import documented
from api.jsonbody import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=StrictJsonRoute)


class WebhookSecret(BaseModel):
    """The key webhooks to this caller are signed with (two during a rotation)."""

    secret: str = Field(
        description="The Standard Webhooks signing secret (`whsec_` and base64); verify "
        "`webhook-signature` with it.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    previous_secret: str | None = Field(
        None,
        description="During a signing-secret rotation: the secret `secret` replaces. Deliveries "
        "carry a signature with each until `previous_secret_expires_at`, so a receiver may "
        "switch to `secret` at any time before then. Null when no rotation is under way.",
    )
    previous_secret_expires_at: datetime | None = Field(
        None, description="When deliveries stop carrying a `previous_secret` signature."
    )


@router.get("/webhook-secret", response_model=WebhookSecret, responses=documented(401))
async def get_webhook_secret(services: ServicesDep, tenant: TenantDep) -> WebhookSecret:
    """The `whsec_` secret this key's webhooks are signed with (verify with standardwebhooks),
    and during a rotation the previous one."""
    secrets = services.webhook_secrets.for_tenant(tenant)
    return WebhookSecret(
        secret=secrets.secret,
        previous_secret=secrets.previous_secret,
        previous_secret_expires_at=secrets.previous_secret_expires_at,
    )
