"""What the use cases need from webhooks: a URL check at submit and a new pending delivery to
write in the same store update that finishes a job or batch (so a crash cannot lose it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.models import WebhookDelivery


async def _accept(url: str) -> None:
    return None


class WebhookHooks:
    def __init__(
        self,
        check_url: Callable[[str], Awaitable[None]] = _accept,
        new_delivery: Callable[[], WebhookDelivery] | None = None,
    ) -> None:
        self.check_url = check_url
        self._new_delivery = new_delivery

    def delivery_for(self, webhook_url: str | None) -> WebhookDelivery | None:
        if not webhook_url or self._new_delivery is None:
            return None
        return self._new_delivery()
