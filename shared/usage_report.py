"""UsageService: a tenant's usage for a period, grouped by day, model or provider.

The store hands back its counters (one per day x model x provider, see shared/usage.py); they are
added up here, once for every store, and the latency percentiles read from the summed histograms.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import InvalidPeriod
from shared.key_usage import KEY_PROVIDER, keyed_tenant
from shared.models import utcnow
from shared.ports import UsageStore
from shared.usage import COUNTER_FIELDS, UsageCounters

DEFAULT_DAYS = 7
MAX_DAYS = 366


class GroupBy(StrEnum):
    """What a usage row adds up: one UTC day, one model, one provider or one API key."""

    day = "day"
    model = "model"
    provider = "provider"
    key = "key"


NO_KEY = "bootstrap"  # group_by=key: requests made with no run-time key (API_KEYS, or none)


class UsageRow(BaseModel):
    """One group's figures. Jobs count on the UTC day they ended."""

    group: str = Field(
        description="The day (YYYY-MM-DD), model, provider, or API key id (`bootstrap`: keys "
        "from API_KEYS, which have no id)."
    )
    requests: int = Field(description="Jobs that ended: succeeded + failed + cancelled.")
    succeeded: int = Field(description="Jobs that ended with an answer.")
    failed: int = Field(description="Jobs that ended without one.")
    cancelled: int = Field(description="Jobs cancelled before they ran.")
    cache_hits: int = Field(description="Requests answered from the cache: LLM calls saved.")
    coalesced: int = Field(
        0,
        description="Requests that joined an identical request in flight and shared its answer:"
        " LLM calls saved.",
    )
    llm_calls: int = Field(description="Attempts that called the LLM (retries included).")
    fallbacks: int = Field(description="Answers given by the fallback provider.")
    input_tokens: int = Field(description="Tokens the LLM answers used (cache hits add none).")
    output_tokens: int = Field(description="Tokens of the answers.")
    latency_ms_p50: int | None = Field(description="Median LLM call latency (±13%); null: none.")
    latency_ms_p95: int | None = Field(description="95th percentile LLM call latency (±13%).")
    failed_by_code: dict[str, int] = Field(description="`failed` by the job's error code.")


class UsageReport(BaseModel):
    """GET /v1/usage: the caller's usage from `from` to `to` (UTC days, both included)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="First day of the period (UTC).")
    to: date = Field(description="Last day of the period, included (UTC).")
    group_by: GroupBy = Field(description="What each row adds up.")
    data: list[UsageRow] = Field(description="One row per group that has usage, in group order.")


def group_of(counters: UsageCounters, group_by: GroupBy) -> str:
    if group_by is GroupBy.day:
        return counters.day.isoformat()
    if group_by is GroupBy.key:  # per-key rows hold the key id as their model
        return counters.model
    return counters.model if group_by is GroupBy.model else counters.provider


def _sum(rows: list[UsageCounters], model: str) -> UsageCounters:
    total = UsageCounters(day=date.min, model=model, provider=KEY_PROVIDER)
    for row in rows:
        total = total.plus(row)
    return total


def _minus(a: UsageCounters, b: UsageCounters) -> UsageCounters:
    """`a` less `b`'s figures (b is part of a)."""
    sums = {name: getattr(a, name) - getattr(b, name) for name in COUNTER_FIELDS}
    codes = {code: n - b.failed_by_code.get(code, 0) for code, n in a.failed_by_code.items()}
    latency = [x - y for x, y in zip(a.latency, b.latency, strict=True)]
    codes = {code: n for code, n in codes.items() if n}
    return a.model_copy(update={**sums, "failed_by_code": codes, "latency": latency})


def summarize(counters: list[UsageCounters], group_by: GroupBy) -> list[UsageRow]:
    groups: dict[str, UsageCounters] = {}
    for row in counters:
        group = group_of(row, group_by)
        groups[group] = groups[group].plus(row) if group in groups else row
    return [_row(group, groups[group]) for group in sorted(groups)]


def _row(group: str, total: UsageCounters) -> UsageRow:
    return UsageRow(
        group=group,
        **total.model_dump(include=set(UsageRow.model_fields)),
        latency_ms_p50=total.percentile_ms(50),
        latency_ms_p95=total.percentile_ms(95),
    )


def period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The days asked for: by default the last DEFAULT_DAYS up to today (or up to `end`).
    InvalidPeriod when `start` is after `end` or the period is over MAX_DAYS long."""
    end = end or today
    start = start or _days_before(end, DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidPeriod(f"from ({start}) is after to ({end})", ("from", "to"))
    if (end - start).days + 1 > MAX_DAYS:
        days = (end - start).days + 1
        raise InvalidPeriod(f"from..to spans {days} days; at most {MAX_DAYS}", ("from", "to"))
    return start, end


def _days_before(day: date, days: int) -> date:
    return day - timedelta(days=min(days, (day - date.min).days))


class UsageService:
    def __init__(self, store: UsageStore) -> None:
        self.store = store

    async def report(
        self,
        tenant: str,
        start: date | None = None,
        end: date | None = None,
        group_by: GroupBy = GroupBy.day,
    ) -> UsageReport:
        """The tenant's usage, read from its counters only (never from its jobs)."""
        start, end = period(start, end, utcnow().date())
        counters = await self.store.usage(tenant, start, end)
        if group_by is GroupBy.key:
            counters = await self._per_key(tenant, start, end, counters)
        return UsageReport(
            from_=start, to=end, group_by=group_by, data=summarize(counters, group_by)
        )

    async def _per_key(
        self, tenant: str, start: date, end: date, total: list[UsageCounters]
    ) -> list[UsageCounters]:
        """The tenant's per-key rows (shared/key_usage.py), and what the tenant's own rows
        hold beyond them as NO_KEY."""
        keyed = await self.store.usage(keyed_tenant(tenant), start, end)
        rest = _sum(total, NO_KEY)
        for row in keyed:
            rest = _minus(rest, row)
        return keyed + ([rest] if rest.requests > 0 else [])
