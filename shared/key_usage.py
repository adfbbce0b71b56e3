"""What a job holds on its API key's counters, and what each of its changes gives back.

A key made at run time may have limits (shared/keys.py `KeyLimits`); the gate (shared/key_limits.py)
takes from the key's counters when it admits a job, and records on the job what it took
(`Job.key_hold`): the month its tokens count in, the tokens reserved for it, and whether it holds
an in-flight slot. From then on the job's changes move the counters, decided here in plain code
(`key_deltas`) and written by each store in the same write as the change itself, exactly as usage
counters are (shared/usage.py). So a change whose compare-and-set fails moves nothing, and a
redelivered job settles once, whatever layout or consumer ended it.

A job's *charge* on its key's counters:
- unfinished: its reserved tokens on its month, and its slot if it holds one;
- ended: the tokens its own LLM answer used (none for a cache hit or a coalesced answer), and no
  slot.

A change moves the counters by the charge after minus the charge before: the change that ends a job
settles its reservation to what it used (giving back the difference) and frees its slot; a job
run again by retry-failed holds a fresh hold with nothing reserved and no slot, so its new run
counts its tokens when it ends. The change that ends a job also adds its tokens to the minute it
ended in (for the key's tpm). Requests are counted by the gate alone, when it admits them.

Per-key usage rows for `/v1/usage?group_by=key` are the tenant's usage counters again, kept under
a tenant name of their own (`keyed_tenant`) with the key id as the model and KEY_PROVIDER as the
provider, written beside the tenant's own in the same write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.keys import KeyHold
from shared.models import Job, JobStatus
from shared.usage import UsageCounters, UsageKey, usage_key

KEY_PROVIDER = "key"  # the provider of a per-key usage row
KEYED = "\x1fkeys\x1f"  # no tenant name holds a control character


def keyed_tenant(tenant: str) -> str:
    """The name a tenant's per-key usage rows are kept under."""
    return KEYED + tenant


def month_of(moment: datetime) -> str:
    """The UTC calendar month of `moment`, "YYYY-MM" (naive datetimes count as UTC)."""
    return _utc(moment).strftime("%Y-%m")


def minute_of(moment: datetime) -> str:
    """The UTC minute of `moment`, "YYYY-MM-DDTHH:MM"."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M")


def next_month(moment: datetime) -> datetime:
    """The first instant of the UTC month after `moment`'s: when a monthly budget resets."""
    moment = _utc(moment)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def tokens_used(job: Job) -> int:
    """The tokens the job's own LLM answer used (0 for a cache hit or a shared answer)."""
    result = job.result
    if job.status is not JobStatus.succeeded or job.cached or job.coalesced or result is None:
        return 0
    return result.usage.input_tokens + result.usage.output_tokens


@dataclass(frozen=True)
class KeyMonth:
    """One key's figures for one UTC month: requests admitted, tokens reserved or used, and the
    budgets whose 80% event has gone out ("requests", "tokens")."""

    requests: int = 0
    tokens: int = 0
    alerted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KeyDeltas:
    """What one write moves on one key's counters."""

    key_id: str
    months: dict[str, int] = field(default_factory=dict)  # tokens added per month
    in_flight: int = 0  # slots taken (+) or freed (-)
    minutes: dict[str, int] = field(default_factory=dict)  # tokens of jobs ended per minute

    def plus(self, other: KeyDeltas) -> KeyDeltas:
        return KeyDeltas(
            self.key_id,
            _summed(self.months, other.months),
            self.in_flight + other.in_flight,
            _summed(self.minutes, other.minutes),
        )

    @property
    def empty(self) -> bool:
        return not (self.months or self.in_flight or self.minutes)


def _charge(job: Job) -> tuple[dict[str, int], int]:
    """Tokens the job holds per month, and slots it holds."""
    hold: KeyHold | None = job.key_hold
    if hold is None:
        return {}, 0
    ended = job.status.is_terminal
    slots = int(hold.slot and not ended)
    if hold.tokens is None:
        return {}, slots
    return {hold.month: tokens_used(job) if ended else hold.tokens}, slots


def key_deltas(before: Job, after: Job) -> KeyDeltas | None:
    """What changing `before` into `after` moves on its key's counters; None when nothing."""
    if after.key_id is None or (before.key_hold is None and after.key_hold is None):
        return None
    (held, slots_before), (holds, slots_after) = _charge(before), _charge(after)
    months = _summed(holds, {month: -tokens for month, tokens in held.items()})
    minutes: dict[str, int] = {}
    ends = after.status.is_terminal and not before.status.is_terminal
    hold = after.key_hold
    if ends and hold is not None and hold.per_minute and (used := tokens_used(after)):
        minutes[minute_of(after.completed_at or after.updated_at)] = used
    deltas = KeyDeltas(after.key_id, months, slots_after - slots_before, minutes)
    return None if deltas.empty else deltas


def merged(deltas: Iterable[KeyDeltas | None]) -> list[KeyDeltas]:
    """Deltas summed per key (a write names each counter once)."""
    by_key: dict[str, KeyDeltas] = {}
    for delta in deltas:
        if delta is not None:
            held = by_key.get(delta.key_id)
            by_key[delta.key_id] = held.plus(delta) if held is not None else delta
    return [d for d in by_key.values() if not d.empty]


def rerun_hold(job: Job, now: datetime) -> KeyHold | None:
    """The hold of a job run again by retry-failed: nothing reserved, no slot; its new run's
    tokens count in this month when it ends."""
    hold = job.key_hold
    if hold is None:
        return None
    tokens = None if hold.tokens is None else 0
    return KeyHold(month=month_of(now), tokens=tokens, per_minute=hold.per_minute)


def key_usage_row(job: Job, counters: UsageCounters) -> tuple[str, UsageCounters] | None:
    """The per-key usage row a job's usage also moves: (tenant name, counters), or None for a
    job without a run-time key."""
    if job.key_id is None:
        return None
    row = counters.model_copy(update={"model": job.key_id, "provider": KEY_PROVIDER})
    return keyed_tenant(job.tenant), row


def usage_rows(job: Job, counters: UsageCounters) -> list[tuple[UsageKey, UsageCounters]]:
    """Every usage row what a job adds moves: its tenant's, and its key's if it has one."""
    rows = [(usage_key(job), counters)]
    if (keyed := key_usage_row(job, counters)) is not None:
        tenant, row = keyed
        rows.append((UsageKey(tenant, row.day, row.model, row.provider), row))
    return rows


def _summed(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for name, value in b.items():
        out[name] = out.get(name, 0) + value
    return {name: value for name, value in out.items() if value}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
