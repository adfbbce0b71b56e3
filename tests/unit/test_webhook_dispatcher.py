"""WebhookDispatcher bookkeeping with a fake sender and a hand-driven clock (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import InvalidWebhookUrl, NotFound
from shared.models import ChatRequest, Job, JobStatus, Message, WebhookDelivery, WebhookState
from shared.webhooks import Sender, WebhookDispatcher, WebhookSendError, signed_headers
from shared.webhooks.delivery import Secrets
from tests.fakes import FakeJobStore


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSender:
    """Answers with the queued outcomes (a status, or an exception to raise); records sends."""

    timeout_s = 15.0

    def __init__(self, *outcomes: int | Exception) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, str, dict[str, Any], Secrets]] = []

    async def send(
        self, url: str, webhook_id: str, payload: dict[str, Any], secrets: Secrets
    ) -> int:
        self.sent.append((url, webhook_id, payload, secrets))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def job(status: JobStatus = JobStatus.succeeded, url: str | None = "https://h.example/") -> Job:
    request = ChatRequest(messages=[Message(role="user", content="hi")])
    return Job(tenant="t1", request=request, status=status, webhook_url=url)


async def setup(
    sender: FakeSender, schedule: list[float], subject: Job
) -> tuple[FakeJobStore, WebhookDispatcher, FakeClock]:
    store, clock = FakeJobStore(), FakeClock()
    await store.create_job(subject)
    checked: Sender = sender
    hooks = WebhookDispatcher(
        store, checked, schedule=schedule, secret_for=lambda t: f"secret-{t}", clock=clock
    )
    return store, hooks, clock


def hook_of(store: FakeJobStore, job_id: str) -> WebhookDelivery:
    delivery = store.jobs[job_id].webhook
    assert delivery is not None
    return delivery


async def test_schedule_records_a_pending_delivery_due_after_the_first_delay() -> None:
    subject = job()
    store, hooks, clock = await setup(FakeSender(200), [5, 60], subject)
    await hooks.schedule(subject, "job.succeeded")
    hook = hook_of(store, subject.id)
    assert hook.state == WebhookState.pending and hook.attempts == 0
    assert hook.id.startswith("msg_") and hook.next_attempt_at == clock.now + timedelta(seconds=5)
    assert await hooks.deliver_due() == 0


async def test_schedule_is_idempotent_and_skips_subjects_without_a_url() -> None:
    subject, silent = job(), job(url=None)
    store, hooks, _ = await setup(FakeSender(200), [0], subject)
    await store.create_job(silent)
    await hooks.schedule(subject)
    first = hook_of(store, subject.id)
    await hooks.schedule(store.jobs[subject.id])
    await hooks.schedule(silent)
    assert hook_of(store, subject.id) == first and store.jobs[silent.id].webhook is None


async def test_schedule_refuses_unfinished_jobs_and_mismatched_events() -> None:
    running = job(JobStatus.running)
    _, hooks, _ = await setup(FakeSender(200), [0], running)
    with pytest.raises(ValueError):
        await hooks.schedule(running)
    with pytest.raises(ValueError):
        await hooks.schedule(job(JobStatus.failed), "job.succeeded")


@pytest.mark.parametrize("status", [JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled])
async def test_event_type_follows_the_job_status(status: JobStatus) -> None:
    subject, sender = job(status), FakeSender(200)
    store, hooks, _ = await setup(sender, [0], subject)
    await hooks.schedule(subject)
    assert await hooks.deliver_due() == 1
    url, webhook_id, payload, secret = sender.sent[0]
    assert (url, webhook_id, secret) == (
        subject.webhook_url,
        hook_of(store, subject.id).id,
        "secret-t1",
    )
    assert payload["type"] == f"job.{status}" and payload["data"]["id"] == subject.id


async def test_failures_follow_the_schedule_then_give_up() -> None:
    subject = job()
    sender = FakeSender(503, WebhookSendError("could not connect"), InvalidWebhookUrl("loopback"))
    store, hooks, clock = await setup(sender, [0, 5, 300], subject)
    await hooks.schedule(subject)

    assert await hooks.deliver_due() == 1
    hook = hook_of(store, subject.id)
    assert (hook.state, hook.attempts, hook.last_status_code) == ("pending", 1, 503)
    assert hook.next_attempt_at == clock.now + timedelta(seconds=5)
    clock.advance(4)
    assert await hooks.deliver_due() == 0
    clock.advance(1)
    assert await hooks.deliver_due() == 1
    hook = hook_of(store, subject.id)
    assert (hook.attempts, hook.last_status_code, hook.last_error) == (2, None, "could not connect")
    clock.advance(300)
    assert await hooks.deliver_due() == 1
    hook = hook_of(store, subject.id)
    assert (hook.state, hook.attempts, hook.next_attempt_at) == ("failed", 3, None)
    assert {s[1] for s in sender.sent} == {hook.id}


async def test_an_unexpected_sender_error_counts_as_a_failed_attempt() -> None:
    subject = job()
    store, hooks, _ = await setup(FakeSender(RuntimeError("boom"), 200), [0, 0], subject)
    await hooks.schedule(subject)
    await hooks.deliver_due()
    assert hook_of(store, subject.id).last_error == "internal error: RuntimeError"
    await hooks.deliver_due()
    assert hook_of(store, subject.id).state == WebhookState.delivered


async def test_claimed_deliveries_are_leased_until_the_attempt_ends() -> None:
    subject = job()
    store, hooks, clock = await setup(FakeSender(200), [0], subject)
    await hooks.schedule(subject)
    leased = await store.due_webhooks(clock.now, clock.now + timedelta(minutes=1), 10)
    assert leased == [subject.id]
    assert await hooks.deliver_due() == 0


class HeldSender(FakeSender):
    """Holds each send until released: an attempt still in flight."""

    def __init__(self, *outcomes: int | Exception) -> None:
        super().__init__(*outcomes)
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def send(
        self, url: str, webhook_id: str, payload: dict[str, Any], secrets: Secrets
    ) -> int:
        self.sending.set()
        await self.release.wait()
        return await super().send(url, webhook_id, payload, secrets)


async def test_a_replay_during_an_attempt_is_not_overwritten_by_its_end() -> None:
    """The operator replays while the last scheduled attempt is in flight; that attempt then
    fails for good. The replay stands: the event goes out once more."""
    subject = job()
    sender = HeldSender(500, 200)
    store, hooks, _ = await setup(sender, [0], subject)
    await hooks.schedule(subject)
    attempt = asyncio.create_task(hooks.deliver_due())
    await asyncio.wait_for(sender.sending.wait(), 1)
    replayed = await hooks.redeliver(store.jobs[subject.id])
    sender.release.set()
    assert await attempt == 1
    assert hook_of(store, subject.id) == replayed  # not `failed` by the attempt that ended
    assert await hooks.deliver_due() == 1
    hook = hook_of(store, subject.id)
    assert (hook.state, hook.last_status_code) == (WebhookState.delivered, 200)
    assert [sent[1] for sent in sender.sent] == [hook.id, hook.id]


async def test_a_replay_reads_again_when_an_attempt_ended_since_its_read() -> None:
    subject = job()
    store, hooks, _ = await setup(FakeSender(500), [0], subject)
    await hooks.schedule(subject)
    read_before = store.jobs[subject.id]
    await hooks.deliver_due()  # gives up: failed, attempts 1
    assert hook_of(store, subject.id).state == WebhookState.failed
    replayed = await hooks.redeliver(read_before)
    assert replayed.state == WebhookState.pending and replayed.attempts == 1
    assert hook_of(store, subject.id) == replayed


async def test_a_replay_of_a_subject_deleted_since_its_read_is_not_found() -> None:
    subject = job()
    store, hooks, _ = await setup(FakeSender(200), [0], subject)
    await hooks.schedule(subject)
    read_before = store.jobs.pop(subject.id)  # DELETE /v1/jobs/{id} after the operator's read
    with pytest.raises(NotFound):
        await hooks.redeliver(read_before)


async def test_run_forever_survives_store_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    subject = job()
    store, hooks, _ = await setup(FakeSender(200), [0], subject)
    await hooks.schedule(subject)
    real_due, calls = store.due_webhooks, []

    async def flaky_due(now: datetime, lease_until: datetime, limit: int) -> list[str]:
        calls.append(now)
        if len(calls) == 1:
            raise ConnectionError("store down")
        return await real_due(now, lease_until, limit)

    monkeypatch.setattr(store, "due_webhooks", flaky_due)
    stop = asyncio.Event()
    sweeper = asyncio.create_task(hooks.run_forever(interval_s=0.001, stop=stop))
    for _ in range(1000):
        if hook_of(store, subject.id).state != WebhookState.pending:
            break
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(sweeper, 1)
    assert len(calls) >= 2 and hook_of(store, subject.id).state == WebhookState.delivered


def test_signed_headers_follow_standard_webhooks() -> None:
    at = datetime(2025, 1, 1, 12, 0, 0, 999_000, tzinfo=UTC)
    headers = signed_headers("whsec_" + "A" * 44, "msg_1", '{"a":1}', at)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
