"""Webhook delivery: `WebhookSender` makes one signed POST; `WebhookDispatcher` schedules
deliveries in the JobStore and retries them on a backoff schedule that survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from standardwebhooks import Webhook

from shared.errors import ChatJobsError, Conflict, InvalidWebhookUrl, NotFound
from shared.models import (
    WEBHOOK_HISTORY,
    Batch,
    Job,
    WebhookAttempt,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.ports import WebhookOutbox
from shared.webhooks.events import build_event, event_type_for, pending_delivery
from shared.webhooks.ssrf import IPAddress, Resolver, check_url

log = logging.getLogger(__name__)

USER_AGENT = "chatjobs-webhooks/1"
LEASE_MARGIN_S = 30.0
REPLAY_TRIES = 5  # reads of a delivery an operator replays while its attempts keep ending


class WebhookSendError(ChatJobsError):
    """The receiver could not be reached or did not answer in time."""


Secrets = str | Sequence[str]  # one `whsec_` secret, or several during a rotation


class Sender(Protocol):
    timeout_s: float

    async def send(
        self, url: str, webhook_id: str, payload: dict[str, Any], secrets: Secrets
    ) -> int:
        """POST the payload signed with every secret; return the HTTP status or raise
        WebhookSendError / InvalidWebhookUrl."""


def signed_headers(secrets: Secrets, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers for `body`: one `v1,` signature per `whsec_` secret,
    space-separated (a receiver accepts the delivery when any of them verifies)."""
    at = at.astimezone(UTC).replace(microsecond=0)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("a webhook needs at least one signing secret")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(key).sign(webhook_id, at, body) for key in keys),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    """POSTs to the address the SSRF check vetted (never re-resolving the host), with the
    original Host header and TLS SNI/certificate check, so DNS rebinding cannot redirect it.
    No proxies (trust_env=False), no redirects, no pooled connections reused across hosts."""

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        allow_private: bool = False,
        resolve: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.timeout_s = timeout_s
        self._allow_private = allow_private
        self._resolve = resolve
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=timeout_s,
            trust_env=False,
            verify=verify,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(
        self, url: str, webhook_id: str, payload: dict[str, Any], secrets: Secrets
    ) -> int:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        headers = signed_headers(secrets, webhook_id, body, datetime.now(UTC))
        try:
            async with asyncio.timeout(self.timeout_s):
                addresses = await check_url(
                    url, allow_private=self._allow_private, resolve=self._resolve
                )
                return await self._post_pinned(httpx.URL(url), addresses, body, headers)
        except TimeoutError:
            raise WebhookSendError(f"no answer within {self.timeout_s:g} s") from None

    async def _post_pinned(
        self, url: httpx.URL, addresses: list[IPAddress], body: str, headers: dict[str, str]
    ) -> int:
        headers = {**headers, "host": url.netloc.decode("ascii")}
        tls = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        failures: list[str] = []
        for address in addresses:
            pinned = url.copy_with(host=str(address))
            try:
                async with self._client.stream(
                    "POST", pinned, content=body, headers=headers, extensions=tls
                ) as response:
                    return response.status_code
            except httpx.ConnectError as exc:
                failures.append(f"{address}: {exc or 'connection refused'}")
            except httpx.TimeoutException:
                raise WebhookSendError(f"no answer within {self.timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise WebhookSendError(f"{type(exc).__name__}: {exc}") from None
        raise WebhookSendError("could not connect: " + "; ".join(failures))


class WebhookDispatcher:
    """Keeps each job's/batch's webhook state in the outbox (the store); any worker delivers it."""

    def __init__(
        self,
        store: WebhookOutbox,
        sender: Sender,
        *,
        schedule: list[float],
        secret_for: Callable[[str], Secrets],
        clock: Callable[[], datetime] = utcnow,
        concurrency: int = 16,
    ) -> None:
        if not schedule:
            raise ValueError("the webhook retry schedule needs at least one delay")
        self._store = store
        self._sender = sender
        self._schedule = schedule
        self._secret_for = secret_for
        self._clock = clock
        self._concurrency = concurrency

    def new_delivery(self) -> WebhookDelivery:
        """A fresh pending delivery; put it in the same store write that finishes the subject
        (`JobOutcome.webhook`) so a crash in between cannot lose the webhook."""
        return pending_delivery(self._clock(), self._schedule, f"msg_{uuid.uuid4().hex}")

    async def schedule(self, subject: Job | Batch, event_type: str | None = None) -> None:
        """Record a pending delivery for a finished subject that has a webhook_url (once)."""
        if not subject.webhook_url or subject.webhook is not None:
            return
        derived = event_type_for(subject)
        if derived is None or (event_type is not None and event_type != derived):
            raise ValueError(f"{subject.id} cannot announce {event_type or 'an event'} yet")
        await self._store.set_webhook(subject.id, self.new_delivery(), expected=None)

    async def deliver_due(self, limit: int = 100) -> int:
        """Claim due deliveries and attempt them concurrently; return how many were attempted."""
        now = self._clock()
        rounds = math.ceil(limit / self._concurrency)
        lease = timedelta(seconds=rounds * self._sender.timeout_s + LEASE_MARGIN_S)
        due = await self._store.due_webhooks(now, lease_until=now + lease, limit=limit)
        gate = asyncio.Semaphore(self._concurrency)

        async def attempt(subject_id: str) -> None:
            async with gate:
                await self._attempt(subject_id)

        outcomes = await asyncio.gather(*(attempt(i) for i in due), return_exceptions=True)
        for subject_id, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("webhook %s: %r", subject_id, outcome, exc_info=outcome)
        return len(due)

    async def run_forever(
        self, interval_s: float = 1.0, stop: asyncio.Event | None = None, limit: int = 100
    ) -> None:
        """The sweeper workers run: deliver what is due every `interval_s` until `stop` is set.
        A full sweep goes again at once; errors are logged and never end the loop."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            attempted = 0
            try:
                attempted = await self.deliver_due(limit)
            except Exception:
                log.exception("webhook sweep failed")
            if attempted < limit:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)

    async def _attempt(self, subject_id: str) -> None:
        subject = await self._load(subject_id)
        if subject is None or subject.webhook is None or not subject.webhook_url:
            return
        if subject.webhook.state != WebhookState.pending:
            return
        sent = subject.webhook
        status, error = await self._send(subject, subject.webhook_url, sent.id)
        after = self._after(sent, status, error)
        if not await self._store.set_webhook(subject.id, after, expected=sent):
            log.info(
                "webhook %s for %s: its delivery changed during the attempt (a replay, or "
                "another sweeper past the lease); this attempt's outcome is not recorded",
                sent.id,
                subject.id,
            )

    async def _send(
        self, subject: Job | Batch, url: str, webhook_id: str
    ) -> tuple[int | None, str | None]:
        event_type = event_type_for(subject)
        if event_type is None:
            return None, f"{subject.id} is not finished"
        try:
            payload = build_event(subject, event_type)
            status = await self._sender.send(
                url, webhook_id, payload, self._secret_for(subject.tenant)
            )
        except (WebhookSendError, InvalidWebhookUrl) as exc:
            return None, str(exc)
        except Exception as exc:
            log.exception("webhook %s for %s failed unexpectedly", webhook_id, subject.id)
            return None, f"internal error: {type(exc).__name__}"
        return status, None if 200 <= status < 300 else f"receiver answered HTTP {status}"

    def _after(
        self, delivery: WebhookDelivery, status: int | None, error: str | None
    ) -> WebhookDelivery:
        attempts = delivery.attempts + 1
        if error is None:
            state, next_at = WebhookState.delivered, None
        elif attempts < len(self._schedule):
            delay = timedelta(seconds=self._schedule[attempts])
            state, next_at = WebhookState.pending, self._clock() + delay
        else:
            state, next_at = WebhookState.failed, None
        made = WebhookAttempt(at=self._clock(), status_code=status, error=error)
        return delivery.model_copy(
            update={
                "state": state,
                "attempts": attempts,
                "last_status_code": status,
                "last_error": error,
                "next_attempt_at": next_at,
                "history": [*delivery.history, made][-WEBHOOK_HISTORY:],
            }
        )

    async def redeliver(self, subject: Job | Batch) -> WebhookDelivery:
        """Send a subject's event again now (an operator's replay), whatever became of it: the
        same `webhook-id`, one more attempt; past the schedule's end a failure gives up again.
        Written over the delivery as read, read again if an attempt ended meanwhile, so an
        attempt finishing at the same moment cannot overwrite the replay."""
        for _ in range(REPLAY_TRIES):
            if subject.webhook is None or not subject.webhook_url:
                raise ValueError(f"{subject.id} has no webhook event to send")
            again = subject.webhook.model_copy(
                update={"state": WebhookState.pending, "next_attempt_at": self._clock()}
            )
            if await self._store.set_webhook(subject.id, again, expected=subject.webhook):
                return again
            reread = await self._load(subject.id)
            if reread is None:  # deleted meanwhile (DELETE /v1/jobs/{id}, retention)
                raise NotFound(subject.id)
            subject = reread
        raise Conflict(f"{subject.id}: its webhook delivery kept changing")

    async def _load(self, subject_id: str) -> Job | Batch | None:
        return await self._store.webhook_subject(subject_id)
