"""What a key has used now (shared/key_figures.py), as the admin API shows it: from its counters
for what its limits count (reservations of unfinished jobs included), from its usage rows for the
rest, on the fakes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.key_figures import key_usage_now, keys_usage_now
from shared.key_usage import month_of, next_month
from shared.keys import ApiKeyRecord, Caller, KeyLimits
from tests.unit.test_key_limits import Parts, body, build


@pytest.fixture
def parts() -> Parts:
    return build()


def record(key_id: str, tenant: str = "t1", **limits: int) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id, tenant=tenant, name=key_id, prefix="ck_x", key_hash=key_id,
        limits=KeyLimits(**limits),
    )  # fmt: skip


async def submit(parts: Parts, key: ApiKeyRecord, prompt: str, **extra: int) -> None:
    await parts.chat.submit(key.tenant, body(prompt, **extra), caller=key.caller())


async def test_a_budgeted_keys_figures_are_its_counters_reservations_included(
    parts: Parts,
) -> None:
    key = record("key_1", monthly_requests=9, monthly_tokens=1000, max_in_flight=5)
    await submit(parts, key, "a b c", max_tokens=50)
    await submit(parts, key, "d e f", max_tokens=50)
    before = await key_usage_now(parts.store, key)
    assert (before.requests, before.tokens, before.in_flight) == (2, 100, 2)  # reserved

    await parts.run_all()

    after = await key_usage_now(parts.store, key)
    now = datetime.now(UTC)
    assert (after.month, after.resets_at) == (month_of(now), next_month(now))
    assert (after.requests, after.tokens, after.in_flight) == (2, 12, 0)  # FakeLLM: 3 + 3 each


async def test_a_key_without_budgets_shows_its_ended_jobs_and_no_in_flight(parts: Parts) -> None:
    key = record("key_free")
    await submit(parts, key, "a b c")
    queued = await key_usage_now(parts.store, key)
    assert (queued.requests, queued.tokens, queued.in_flight) == (0, 0, None)  # none ended yet

    await parts.run_all()

    ended = await key_usage_now(parts.store, key)
    assert (ended.requests, ended.tokens, ended.in_flight) == (1, 6, None)


async def test_a_requests_budget_counts_admissions_and_tokens_come_from_usage_rows(
    parts: Parts,
) -> None:
    key = record("key_req", monthly_requests=10, max_in_flight=4)
    for prompt in ("a b", "c d", "e f"):
        await submit(parts, key, prompt)
    await parts.run_all()
    await submit(parts, key, "g h")  # admitted, not ended

    usage = await key_usage_now(parts.store, key)
    assert (usage.requests, usage.tokens, usage.in_flight) == (4, 12, 1)


async def test_a_page_of_keys_reads_each_its_own_figures(parts: Parts) -> None:
    keys = [
        record("key_a", monthly_requests=5),
        record("key_b"),
        record("key_c", tenant="t2"),
        record("key_d", tenant="t2", monthly_tokens=500, max_in_flight=9),
    ]
    for n, key in enumerate(keys):
        for i in range(n + 1):
            await submit(parts, key, f"k{n} q{i} x", max_tokens=20)
    await parts.run_all()
    await parts.chat.submit("t1", body("bootstrap x"), caller=Caller("t1"))  # no key: nowhere

    shown = await keys_usage_now(parts.store, keys)

    figures = {k: (u.requests, u.tokens, u.in_flight) for k, u in shown.items()}
    assert figures == {
        "key_a": (1, 6, None),  # FakeLLM: "k0 q0 x" is 3 tokens in, 3 out
        "key_b": (2, 12, None),
        "key_c": (3, 18, None),
        "key_d": (4, 24, 0),
    }
