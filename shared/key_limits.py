"""KeyGate: a run-time API key's limits, applied when its requests are admitted.

ChatService.submit and BatchService.create call it for the caller's key (a bootstrap key, with no
id, has no limits here). In the order a submission meets them:
- tpm: the tokens of the key's jobs that ended this UTC minute; at or past the limit, 429
  `rate_limited` with Retry-After until the minute rolls (tokens count when a job ends, so the
  limit holds the *next* request);
- rpm: one hit per submission (a batch is one) in the RateWindow RATE_LIMIT uses, keyed by key
  id: 429 `rate_limited` with the window's Retry-After;
- monthly_requests and monthly_tokens: one atomic reservation on the key's month
  (KeyCounters.reserve) of the submission's requests (a batch counts each of its requests) and
  its estimated tokens (each queued request's max_tokens, else BUDGET_TOKEN_ESTIMATE; cache hits
  reserve none). Refused whole when either would pass its budget: 429 `budget_exceeded` naming
  the budget and when it resets (the first instant of the next UTC month, also as Retry-After);
- max_in_flight: one conditional take of a slot per queued job (cache hits never hold one): 429
  `rate_limited` when they do not all fit.

What was taken comes back as a `KeyTicket`; its `hold_for(job)` goes on each job stored, and the
job's end settles it (shared/key_usage.py). A submission refused after the gate (backpressure,
the store, a replay found late) gives its ticket back (`refund`); one whose queue refused its
stored jobs gives back its requests (`refund_requests`), the jobs' own failure freeing their
slots and tokens.

When a reservation leaves a budget at or past 80%, the key's `key.budget_threshold` event goes out,
once per key, month and budget (KeyCounters.mark_alerted), through BudgetAlerts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from shared.adapters.ratelimit import RateWindow
from shared.errors import BudgetExceeded, KeyRateLimited
from shared.key_usage import KeyDeltas, KeyMonth, minute_of, month_of, next_month
from shared.keys import Caller, KeyHold, KeyLimits
from shared.models import ChatRequest, Job, JobStatus, utcnow
from shared.ports import KeyCounters

log = logging.getLogger(__name__)

THRESHOLD = 0.8  # of a monthly budget: when its key.budget_threshold event goes out
IN_FLIGHT_RETRY_S = 1
RPM_WINDOW_S = 60


class BudgetAlerts(Protocol):
    async def crossed(self, caller: Caller, budget: str, limit: int, used: int, month: str) -> None:
        """Announce that `caller`'s key has used `used` of its `budget` (`monthly_requests` or
        `monthly_tokens`) of `limit` this month: past THRESHOLD. Called once per key, month and
        budget; never raises."""


@dataclass(frozen=True)
class KeyTicket:
    """What the gate took for one submission."""

    key_id: str
    month: str
    requests: int  # reserved on the month (0 when the key has no monthly budget)
    tokens: int  # reserved on the month
    slots: int  # in-flight slots taken
    limits: KeyLimits
    token_estimate: int

    def hold_for(self, job: Job) -> KeyHold:
        """The hold to store on one of the submission's jobs (queued, or answered from cache)."""
        queued = job.status is JobStatus.queued
        tokens: int | None = None
        if self.limits.monthly_tokens is not None:
            tokens = estimate(job.request, self.token_estimate) if queued else 0
        return KeyHold(
            month=self.month,
            tokens=tokens,
            slot=queued and self.slots > 0,
            per_minute=self.limits.tpm is not None,
        )


def estimate(request: ChatRequest, default: int) -> int:
    """Tokens reserved for a request: its max_tokens, else the default estimate."""
    return request.max_tokens or default


def _budgeted(limits: KeyLimits) -> bool:
    return limits.monthly_requests is not None or limits.monthly_tokens is not None


class KeyGate:
    def __init__(
        self,
        counters: KeyCounters,
        window: RateWindow | None = None,
        *,
        token_estimate: int = 1000,
        alerts: BudgetAlerts | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.counters, self.window = counters, window
        self.token_estimate, self.alerts, self.clock = token_estimate, alerts, clock

    def estimate(self, requests: list[ChatRequest]) -> int:
        return sum(estimate(r, self.token_estimate) for r in requests)

    async def check_rates(self, caller: Caller) -> None:
        """The key's tpm, then its rpm (one hit for this submission); KeyRateLimited if over."""
        key_id, limits = caller.key_id, caller.limits
        if key_id is None:
            return
        now = self.clock()
        if limits.tpm is not None:
            used = await self.counters.minute_tokens(key_id, minute_of(now))
            if used >= limits.tpm:
                wait = 60 - now.second
                raise KeyRateLimited(
                    f"this key's tpm of {limits.tpm} tokens is used up this minute ({used} "
                    f"tokens); retry in {wait} s",
                    retry_after_s=wait,
                )
        if limits.rpm is not None and self.window is not None:
            await _hit_rpm(self.window, key_id, limits.rpm)

    async def admit(
        self, caller: Caller, *, requests: int, tokens: int, slots: int
    ) -> KeyTicket | None:
        """Take `requests`, `tokens` (the queued ones' estimate) and `slots` (queued jobs) from
        the key's limits, all or nothing; None when the key has no limit that counts them."""
        key_id, limits = caller.key_id, caller.limits
        if key_id is None or not (_budgeted(limits) or limits.max_in_flight or limits.tpm):
            return None
        now = self.clock()
        month = month_of(now)
        taken = KeyTicket(
            key_id,
            month,
            requests=requests if _budgeted(limits) else 0,
            tokens=tokens if limits.monthly_tokens is not None else 0,
            slots=slots if limits.max_in_flight is not None else 0,
            limits=limits,
            token_estimate=self.token_estimate,
        )
        figures = await self._reserve(taken, now)
        if taken.slots and not await self.counters.enter(
            key_id, taken.slots, limits.max_in_flight or 0
        ):
            await self.refund(replace(taken, slots=0))
            held = await self.counters.in_flight(key_id)
            raise KeyRateLimited(
                f"this key's max_in_flight of {limits.max_in_flight} jobs queued or running "
                f"has no room for {taken.slots} more ({held} now); retry in {IN_FLIGHT_RETRY_S} s",
                retry_after_s=IN_FLIGHT_RETRY_S,
            )
        if figures is not None:
            await self._alert(caller, month, figures)
        return taken

    async def _reserve(self, taken: KeyTicket, now: datetime) -> KeyMonth | None:
        limits = taken.limits
        if not _budgeted(limits):
            return None
        figures = await self.counters.reserve(
            taken.key_id,
            taken.month,
            requests=taken.requests,
            tokens=taken.tokens,
            max_requests=limits.monthly_requests,
            max_tokens=limits.monthly_tokens,
        )
        if figures is None:
            held = await self.counters.key_month(taken.key_id, taken.month)
            raise _exceeded(taken, held, now)
        return figures

    async def _alert(self, caller: Caller, month: str, figures: KeyMonth) -> None:
        assert caller.key_id is not None
        budgets = (
            ("monthly_requests", caller.limits.monthly_requests, figures.requests),
            ("monthly_tokens", caller.limits.monthly_tokens, figures.tokens),
        )
        for budget, limit, used in budgets:
            if limit is None or budget in figures.alerted or used < THRESHOLD * limit:
                continue
            if self.alerts is not None and await self.counters.mark_alerted(
                caller.key_id, month, budget
            ):
                await self.alerts.crossed(caller, budget, limit, used, month)

    async def refund(self, ticket: KeyTicket | None) -> None:
        """Give back everything `ticket` took (nothing of it was stored)."""
        if ticket is None:
            return
        await self.refund_requests(ticket, tokens=ticket.tokens)
        if ticket.slots:
            await self.counters.move_key_counters(KeyDeltas(ticket.key_id, in_flight=-ticket.slots))

    async def refund_requests(self, ticket: KeyTicket | None, *, tokens: int = 0) -> None:
        """Give back the requests `ticket` counted (its jobs were stored, then refused)."""
        if ticket is not None and (ticket.requests or tokens):
            await self.counters.unreserve(
                ticket.key_id, ticket.month, requests=ticket.requests, tokens=tokens
            )


async def _hit_rpm(window: RateWindow, key_id: str, rpm: int) -> None:
    try:
        allowed, wait_s = await window.hit(f"key:{key_id}", rpm, RPM_WINDOW_S)
    except Exception:  # as RATE_LIMIT does: an outage of its storage lets requests through
        log.warning("rate limit storage unreachable; key rpm not applied", exc_info=True)
        return
    if not allowed:
        wait = max(int(wait_s), 1)
        raise KeyRateLimited(
            f"this key's rpm of {rpm} requests a minute is used up; retry in {wait} s",
            retry_after_s=wait,
        )


def _exceeded(taken: KeyTicket, held: KeyMonth, now: datetime) -> BudgetExceeded:
    limits = taken.limits
    resets = next_month(now)
    when = resets.isoformat().replace("+00:00", "Z")
    wait = math.ceil((resets - now) / timedelta(seconds=1))
    max_requests = limits.monthly_requests
    if max_requests is not None and held.requests + taken.requests > max_requests:
        used, budget, unit = held.requests, max_requests, "requests"
        name, asked = "monthly_requests", taken.requests
    else:
        used, budget, unit = held.tokens, limits.monthly_tokens or 0, "tokens"
        name, asked = "monthly_tokens", taken.tokens
    return BudgetExceeded(
        f"this key's {name} budget of {budget} {unit} has room for {max(budget - used, 0)} "
        f"more this month and this request needs {asked}; it resets at {when}",
        retry_after_s=wait,
    )
