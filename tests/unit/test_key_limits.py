"""A run-time key's limits at submit (KeyGate in ChatService and BatchService), on the fakes:
monthly budgets, max_in_flight, rpm and tpm, refunds, and the 80% event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.ratelimit.memory import MemoryRateWindow
from shared.admission import Admission
from shared.batches import BatchService
from shared.errors import (
    BudgetExceeded,
    InvalidWebhookUrl,
    KeyRateLimited,
    Overloaded,
    QueueUnavailable,
)
from shared.execution import JobExecutor, requeueing_consumer
from shared.key_limits import KeyGate
from shared.key_usage import month_of
from shared.keys import Caller, KeyLimits
from shared.models import BatchItem, Completion, JobCreate
from shared.retry import RetryPolicy
from shared.service import ChatService, cache_key
from shared.usage_report import GroupBy, UsageService
from shared.webhooks.hooks import WebhookHooks
from shared.webhooks.key_events import BUDGET_THRESHOLD, BudgetWebhooks
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache

KEY = "key_1"
PROMPT = "one two three"  # FakeLLM: 3 tokens in, 3 out


def body(prompt: str = PROMPT, **extra: Any) -> JobCreate:
    return JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}], **extra})


def caller(key_id: str = KEY, **limits: int) -> Caller:
    return Caller("t1", key_id, KeyLimits(**limits))


@dataclass
class Alerts:
    seen: list[tuple[str, str, int, int]] = field(default_factory=list)

    async def crossed(self, caller: Caller, budget: str, limit: int, used: int, month: str) -> None:
        self.seen.append((caller.key_id or "", budget, limit, used))


@dataclass
class Parts:
    chat: ChatService
    batches: BatchService
    store: FakeJobStore
    cache: FakeResultCache
    queue: FakeJobQueue
    gate: KeyGate
    alerts: Alerts

    async def run_all(self) -> None:
        executor = JobExecutor(
            self.store,
            self.cache,
            FakeLLM(),
            job_timeout_s=5,
            retry=RetryPolicy(budget_s=60, base_s=0, max_delay_s=0, max_attempts=3),
            cache_ttl_s=60,
        )
        await self.queue.start(requeueing_consumer(executor, self.queue))
        await self.queue.drain()

    async def month(self, key_id: str = KEY) -> tuple[int, int]:
        held = await self.store.key_month(key_id, month_of(datetime.now(UTC)))
        return held.requests, held.tokens


def build(
    *,
    max_queued: int = 0,
    check_url: Callable[[str], Any] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Parts:
    store, cache, queue, alerts = FakeJobStore(), FakeResultCache(), FakeJobQueue(), Alerts()
    gate = KeyGate(store, MemoryRateWindow(), token_estimate=100, alerts=alerts)
    if clock is not None:
        gate.clock = clock
    hooks = WebhookHooks(check_url) if check_url else None
    admission = Admission(store, max_queued=max_queued)
    chat = ChatService(store, cache, queue, hooks, admission=admission, gate=gate)
    batches = BatchService(store, cache, queue, hooks, admission, gate=gate)
    return Parts(chat, batches, store, cache, queue, gate, alerts)


@pytest.fixture
def parts() -> Parts:
    return build()


def items(n: int, **extra: Any) -> list[BatchItem]:
    return [
        BatchItem.model_validate(
            {"custom_id": f"q{i}", "messages": [{"role": "user", "content": f"q {i} x"}], **extra}
        )
        for i in range(n)
    ]


async def test_a_monthly_request_budget_refuses_past_it_and_says_when_it_resets() -> None:
    now = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)
    parts = build(clock=lambda: now)
    key = caller(monthly_requests=3)
    for i in range(3):
        await parts.chat.submit("t1", body(f"p {i}"), caller=key)

    with pytest.raises(BudgetExceeded) as refused:
        await parts.chat.submit("t1", body("p 4"), caller=key)

    message = str(refused.value)
    assert "monthly_requests budget of 3 requests" in message
    assert "2026-03-01T00:00:00Z" in message
    assert refused.value.retry_after_s == 36 * 3600  # until the first instant of March, UTC
    assert len(parts.store.jobs) == 3


async def test_a_bootstrap_key_has_no_limits(parts: Parts) -> None:
    for i in range(5):
        await parts.chat.submit("t1", body(f"p {i}"), caller=Caller("t1"))
    assert parts.store.key_counters.months == {}


async def test_cache_hits_count_as_requests_with_no_tokens_and_no_slot(parts: Parts) -> None:
    hit = Completion(content="hi", provider="p", model="m")
    parts.cache.entries[cache_key("t1", body().chat_request())] = hit
    key = caller(monthly_requests=10, monthly_tokens=1000, max_in_flight=1)

    job = await parts.chat.submit("t1", body(), caller=key)
    again = await parts.chat.submit("t1", body(), caller=key)

    assert job.cached and again.cached
    assert await parts.month() == (2, 0)
    assert await parts.store.in_flight(KEY) == 0


async def test_an_idempotent_replay_does_not_count_again(parts: Parts) -> None:
    key = caller(monthly_requests=1)
    first = await parts.chat.submit("t1", body(), "idem-1", caller=key)
    replay = await parts.chat.submit("t1", body(), "idem-1", caller=key)
    assert replay.id == first.id
    assert await parts.month() == (1, 0)


async def test_a_batch_counts_each_request_and_is_refused_whole(parts: Parts) -> None:
    key = caller(monthly_requests=10)
    batch = await parts.batches.create("t1", items(6), caller=key)
    assert batch.counts.total == 6 and await parts.month() == (6, 0)

    with pytest.raises(BudgetExceeded, match="room for 4 more"):
        await parts.batches.create("t1", items(5), caller=key)

    assert len(parts.store.batches) == 1 and len(parts.store.jobs) == 6
    assert await parts.month() == (6, 0)
    await parts.batches.create("t1", items(4), caller=key)
    assert await parts.month() == (10, 0)


async def test_token_budget_reserves_max_tokens_and_settles_to_what_was_used(
    parts: Parts,
) -> None:
    key = caller(monthly_tokens=60)
    accepted = 0
    with pytest.raises(BudgetExceeded, match="monthly_tokens budget of 60 tokens"):
        for i in range(20):
            await parts.chat.submit("t1", body(f"a b {i}", max_tokens=6), caller=key)
            accepted += 1
    assert accepted == 10 and await parts.month() == (10, 60)

    await parts.run_all()

    assert await parts.month() == (10, 60)  # each used 3 + 3: what was reserved, exactly
    with pytest.raises(BudgetExceeded):
        await parts.chat.submit("t1", body("a b c", max_tokens=6), caller=key)


async def test_without_max_tokens_the_default_estimate_is_reserved_then_settled(
    parts: Parts,
) -> None:
    key = caller(monthly_tokens=250)
    await parts.chat.submit("t1", body("a b c"), caller=key)
    await parts.chat.submit("t1", body("d e f"), caller=key)
    assert await parts.month() == (2, 200)  # BUDGET_TOKEN_ESTIMATE (100 here) each
    with pytest.raises(BudgetExceeded):
        await parts.chat.submit("t1", body("g h i"), caller=key)

    await parts.run_all()

    assert await parts.month() == (2, 12)
    await parts.chat.submit("t1", body("g h i"), caller=key)


async def test_max_in_flight_holds_until_jobs_end(parts: Parts) -> None:
    key = caller(max_in_flight=2)
    await parts.chat.submit("t1", body("a"), caller=key)
    second = await parts.chat.submit("t1", body("b"), caller=key)
    with pytest.raises(KeyRateLimited, match="max_in_flight of 2"):
        await parts.chat.submit("t1", body("c"), caller=key)
    with pytest.raises(KeyRateLimited):
        await parts.batches.create("t1", items(1), caller=key)

    await parts.chat.cancel("t1", second.id)  # a cancelled job frees its slot
    assert await parts.store.in_flight(KEY) == 1
    await parts.chat.submit("t1", body("c"), caller=key)
    await parts.run_all()  # jobs that succeed free theirs

    assert await parts.store.in_flight(KEY) == 0
    batch = await parts.batches.create("t1", items(2), caller=key)
    assert batch.counts.queued == 2 and await parts.store.in_flight(KEY) == 2


async def test_rpm_counts_submissions_per_key(parts: Parts) -> None:
    key = caller(rpm=2)
    await parts.chat.submit("t1", body("a"), caller=key)
    await parts.batches.create("t1", items(5), caller=key)  # a batch is one submission
    with pytest.raises(KeyRateLimited, match="rpm of 2") as refused:
        await parts.chat.submit("t1", body("c"), caller=key)
    assert 1 <= refused.value.retry_after_s <= 60
    await parts.chat.submit("t1", body("c"), caller=caller("key_2", rpm=2))


async def test_tpm_counts_tokens_when_jobs_end_and_holds_the_next_request() -> None:
    now = datetime.now(UTC)
    clock = [now]
    parts = build(clock=lambda: clock[0])
    key = caller(tpm=10)
    await parts.chat.submit("t1", body("a b c"), caller=key)
    await parts.chat.submit("t1", body("d e f"), caller=key)  # nothing has ended yet: allowed
    await parts.run_all()  # 12 tokens end this minute

    with pytest.raises(KeyRateLimited, match="tpm of 10") as refused:
        await parts.chat.submit("t1", body("g h i"), caller=key)
    assert refused.value.retry_after_s == 60 - now.second

    clock[0] = now + timedelta(minutes=1)  # the minute rolls
    await parts.chat.submit("t1", body("g h i"), caller=key)


async def test_a_submit_refused_for_backpressure_gives_everything_back() -> None:
    parts = build(max_queued=1)
    key = caller(monthly_requests=5, monthly_tokens=1000, max_in_flight=5)
    await parts.chat.submit("t1", body("a"), caller=key)
    with pytest.raises(Overloaded):
        await parts.chat.submit("t1", body("b"), caller=key)
    with pytest.raises(Overloaded):
        await parts.batches.create("t1", items(3), caller=key)
    assert await parts.month() == (1, 100)
    assert await parts.store.in_flight(KEY) == 1


async def test_a_submit_the_queue_refused_gives_everything_back(parts: Parts) -> None:
    key = caller(monthly_requests=5, monthly_tokens=1000, max_in_flight=5)
    parts.queue.refuse = True
    with pytest.raises(QueueUnavailable):
        await parts.chat.submit("t1", body("a"), caller=key)
    with pytest.raises(QueueUnavailable):
        await parts.batches.create("t1", items(3), caller=key)
    assert await parts.month() == (0, 0)
    assert await parts.store.in_flight(KEY) == 0


async def test_a_refused_webhook_url_counts_nothing() -> None:
    async def refuse(url: str) -> None:
        raise InvalidWebhookUrl("private address")

    parts = build(check_url=refuse)
    key = caller(monthly_requests=5, rpm=1)
    for _ in range(2):
        with pytest.raises(InvalidWebhookUrl):
            await parts.chat.submit("t1", body(webhook_url="http://10.0.0.1/x"), caller=key)
    assert await parts.month() == (0, 0)
    await parts.chat.submit("t1", body(), caller=key)  # its rpm was not spent either


async def test_the_80_percent_event_goes_out_once_per_budget(parts: Parts) -> None:
    key = caller(monthly_requests=5, monthly_tokens=1000)
    for i in range(5):
        await parts.chat.submit("t1", body(f"p {i}", max_tokens=200), caller=key)
    assert sorted(parts.alerts.seen) == [
        (KEY, "monthly_requests", 5, 4),
        (KEY, "monthly_tokens", 1000, 800),
    ]


@dataclass
class Recorder:
    timeout_s: float = 1.0
    sent: list[tuple[str, str, dict[str, Any], Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [500, 204])

    async def send(self, url: str, webhook_id: str, payload: dict[str, Any], secrets: Any) -> int:
        self.sent.append((url, webhook_id, payload, secrets))
        return self.statuses.pop(0)


async def test_the_budget_event_is_signed_for_the_tenant_and_retried_with_one_id() -> None:
    sender = Recorder()
    hooks = BudgetWebhooks(
        "https://ops.example/hooks", sender, schedule=[0, 0], secret_for=lambda t: f"whsec_{t}"
    )
    await hooks.crossed(caller(monthly_requests=10), "monthly_requests", 10, 8, "2026-12")
    await hooks.wait()

    assert [s[1] for s in sender.sent] == [sender.sent[0][1]] * 2  # one id for both attempts
    url, _, payload, secret = sender.sent[0]
    assert url == "https://ops.example/hooks" and secret == "whsec_t1"
    assert payload["type"] == BUDGET_THRESHOLD
    assert payload["data"] == {
        "key_id": KEY,
        "tenant": "t1",
        "budget": "monthly_requests",
        "limit": 10,
        "used": 8,
        "month": "2026-12",
        "resets_at": "2027-01-01T00:00:00Z",
    }


async def test_usage_by_key_has_a_row_per_key_and_one_for_keys_without_an_id(
    parts: Parts,
) -> None:
    await parts.chat.submit("t1", body("a b"), caller=caller("key_a", monthly_requests=9))
    await parts.chat.submit("t1", body("c d"), caller=caller("key_a", monthly_requests=9))
    await parts.chat.submit("t1", body("e f g"), caller=Caller("t1", "key_b"))  # no limits
    await parts.chat.submit("t1", body("h"), caller=Caller("t1"))  # a bootstrap key
    await parts.chat.submit("t2", body("i"), caller=Caller("t2", "key_c"))
    await parts.run_all()

    report = await UsageService(parts.store).report("t1", group_by=GroupBy.key)

    rows = [(r.group, r.requests, r.input_tokens, r.output_tokens) for r in report.data]
    assert rows == [("bootstrap", 1, 1, 1), ("key_a", 2, 4, 4), ("key_b", 1, 3, 3)]
