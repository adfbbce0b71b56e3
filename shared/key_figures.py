"""What run-time API keys have used of their limits now: the `usage` of each key in the admin API
(`GET /v1/admin/keys`, `GET /v1/admin/keys/{id}`, and the answers that change a key).

A figure that one of the key's limits is checked against comes from the key's counters
(shared/key_usage.py): exact, read consistently, and including what its unfinished jobs hold, so
an operator sees what the gate (shared/key_limits.py) sees. The counters count only what a limit
needs (requests for a monthly budget, tokens for `monthly_tokens`, slots for `max_in_flight`), so
for a key without that limit the month's requests and tokens come from its per-key usage rows
(those of `/v1/usage?group_by=key`: jobs that ended), read once per tenant for a page of keys,
and its jobs in flight are not known (null).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from shared.key_usage import keyed_tenant, month_of, next_month
from shared.keys import ApiKeyRecord, KeyUsageNow
from shared.models import utcnow
from shared.ports import KeyCounters, UsageStore
from shared.usage import UsageCounters, utc_day


class KeyFigures(KeyCounters, UsageStore, Protocol):
    """Where a key's figures are read from: its counters, and its tenant's per-key usage rows."""


async def key_usage_now(
    store: KeyFigures,
    key: ApiKeyRecord,
    now: datetime | None = None,
    rows: list[UsageCounters] | None = None,
) -> KeyUsageNow:
    """What `key` has used this month and holds in flight now. `rows`: its tenant's per-key
    usage rows of the month, if already read."""
    now = now or utcnow()
    month, limits = month_of(now), key.limits
    budgeted = limits.monthly_requests is not None or limits.monthly_tokens is not None
    if rows is None and _needs_rows(key):
        rows = await _month_rows(store, key.tenant, now)
    ended = [row for row in rows or [] if row.model == key.id]
    requests = sum(row.requests for row in ended)
    tokens = sum(row.input_tokens + row.output_tokens for row in ended)
    if budgeted:
        counted = await store.key_month(key.id, month)
        requests = counted.requests
        tokens = counted.tokens if limits.monthly_tokens is not None else tokens
    in_flight = await store.in_flight(key.id) if limits.max_in_flight is not None else None
    return KeyUsageNow(
        month=month,
        resets_at=next_month(now),
        requests=requests,
        tokens=tokens,
        in_flight=in_flight,
    )


async def keys_usage_now(
    store: KeyFigures, keys: Iterable[ApiKeyRecord], now: datetime | None = None
) -> dict[str, KeyUsageNow]:
    """`key_usage_now` of each key (by id), reading each tenant's usage rows once."""
    now = now or utcnow()
    keys = list(keys)
    tenants = sorted({key.tenant for key in keys if _needs_rows(key)})
    read = await asyncio.gather(*(_month_rows(store, tenant, now) for tenant in tenants))
    rows = dict(zip(tenants, read, strict=True))
    figures = await asyncio.gather(
        *(key_usage_now(store, key, now, rows.get(key.tenant, [])) for key in keys)
    )
    return {key.id: usage for key, usage in zip(keys, figures, strict=True)}


def _needs_rows(key: ApiKeyRecord) -> bool:
    """True unless the key's counters hold both its month's requests and its tokens."""
    return key.limits.monthly_tokens is None


async def _month_rows(store: UsageStore, tenant: str, now: datetime) -> list[UsageCounters]:
    """The tenant's per-key usage rows from the first day of `now`'s UTC month to its day."""
    today = utc_day(now)
    return await store.usage(keyed_tenant(tenant), today.replace(day=1), today)
