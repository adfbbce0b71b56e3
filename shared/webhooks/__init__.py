"""Standard Webhooks delivery: per-tenant secrets, SSRF checks, signed sends and retries."""

from shared.webhooks.delivery import (
    Sender,
    WebhookDispatcher,
    WebhookSender,
    WebhookSendError,
    signed_headers,
)
from shared.webhooks.events import build_event, event_type_for
from shared.webhooks.secrets import load_or_create_master, tenant_secret
from shared.webhooks.ssrf import check_url, refusal_reason, validate_url_syntax

__all__ = [
    "Sender",
    "WebhookDispatcher",
    "WebhookSendError",
    "WebhookSender",
    "build_event",
    "check_url",
    "event_type_for",
    "load_or_create_master",
    "refusal_reason",
    "signed_headers",
    "tenant_secret",
    "validate_url_syntax",
]
