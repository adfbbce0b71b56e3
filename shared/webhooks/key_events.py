"""`key.budget_threshold`: a run-time API key's monthly budget has crossed 80%.

Sent to the operator's BUDGET_WEBHOOK_URL (a key's tenant may send each job's events somewhere
else, so none of those addresses is the place for news about the key), signed like every other
webhook with the key's tenant's secret (Standard Webhooks headers; the `webhook-id` is the same
for every attempt and every process: derived from key, month and budget). KeyGate decides that
the event is due, once per key, month and budget (KeyCounters.mark_alerted); this sends it in the
background, retrying on WEBHOOK_RETRY_SCHEDULE while the process lives. Unlike a job's events it
has no outbox: a process that stops before the receiver took it loses the rest of its retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from shared.key_usage import next_month
from shared.keys import Caller
from shared.models import utcnow
from shared.webhooks.delivery import Secrets, Sender

log = logging.getLogger(__name__)

BUDGET_THRESHOLD = "key.budget_threshold"


def budget_event(caller: Caller, budget: str, limit: int, used: int, month: str) -> dict[str, Any]:
    year, number = (int(part) for part in month.split("-"))
    resets = next_month(utcnow().replace(year=year, month=number, day=1))
    return {
        "type": BUDGET_THRESHOLD,
        "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
        "data": {
            "key_id": caller.key_id,
            "tenant": caller.tenant,
            "budget": budget,
            "limit": limit,
            "used": used,
            "month": month,
            "resets_at": resets.isoformat().replace("+00:00", "Z"),
        },
    }


def event_id(key_id: str, month: str, budget: str) -> str:
    digest = hashlib.sha256(f"{key_id}\n{month}\n{budget}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


class BudgetWebhooks:
    """BudgetAlerts (shared/key_limits.py) as signed webhooks to one URL."""

    def __init__(
        self,
        url: str,
        sender: Sender,
        *,
        schedule: list[float],
        secret_for: Callable[[str], Secrets],
    ) -> None:
        self.url, self.sender, self.schedule, self.secret_for = url, sender, schedule, secret_for
        self._sending: set[asyncio.Task[None]] = set()

    async def crossed(self, caller: Caller, budget: str, limit: int, used: int, month: str) -> None:
        assert caller.key_id is not None
        payload = budget_event(caller, budget, limit, used, month)
        webhook_id = event_id(caller.key_id, month, budget)
        task = asyncio.create_task(self._deliver(webhook_id, payload, caller.tenant))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, webhook_id: str, payload: dict[str, Any], tenant: str) -> None:
        for attempt, delay in enumerate(self.schedule, start=1):
            await asyncio.sleep(delay)
            try:
                status = await self.sender.send(
                    self.url, webhook_id, payload, self.secret_for(tenant)
                )
            except Exception as exc:
                log.warning("%s %s attempt %d: %s", BUDGET_THRESHOLD, webhook_id, attempt, exc)
                continue
            if 200 <= status < 300:
                return
            log.warning("%s %s attempt %d: HTTP %d", BUDGET_THRESHOLD, webhook_id, attempt, status)
        log.error("%s %s was not delivered", BUDGET_THRESHOLD, webhook_id)

    async def wait(self) -> None:
        """Until the deliveries under way have ended (delivered, or out of attempts)."""
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def close(self) -> None:
        """Stop retrying (the process is stopping)."""
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
