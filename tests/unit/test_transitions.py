"""The job state machine as a table: a job as read, a decision, and what the write must do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import transitions as t
from shared.models import (
    ChatRequest,
    Completion,
    Job,
    JobError,
    JobStatus,
    Message,
    Usage,
    WebhookDelivery,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=60)
EARLIER = NOW - timedelta(seconds=60)
ANSWER = Completion(content="hi", provider="gemini", model="g", usage=Usage(input_tokens=3))
NOTE = JobError(code="llm_unavailable", message="retrying")
Q, R = JobStatus.queued, JobStatus.running
S: t.Ended = JobStatus.succeeded
F: t.Ended = JobStatus.failed
C: t.Ended = JobStatus.cancelled


def job(status: JobStatus = Q, **fields: Any) -> Job:
    request = ChatRequest(messages=[Message(role="user", content="hello")])
    base: dict[str, Any] = {"tenant": "t1", "request": request, "status": status}
    return Job(**{**base, **fields})


def outcome(status: t.Ended, expect: JobStatus = R, **fields: Any) -> t.JobOutcome:
    return t.JobOutcome(status=status, expect=expect, **fields)


@dataclass
class Case:
    name: str
    before: Job
    decide: Callable[[Job], t.Change | None]
    status: JobStatus | None  # None: the decision refuses
    fields: dict[str, Any] = field(default_factory=dict)
    counts_usage: bool = False


def claim(j: Job) -> t.Change | None:
    return t.claim(j, lease_until=LATER, now=NOW)


HOOK = WebhookDelivery(id="w")
REJECTED = JobError(code="llm_rejected", message="blocked")
EXHAUSTED = JobError(code="attempts_exhausted", message="delivered too many times")


def follow(j: Job, *, attempt: int) -> t.Change | None:
    return t.follow(j, attempt=attempt, leader_id="L", now=NOW)


def settle(j: Job, *, leader: Job | None) -> t.Change | None:
    return t.settle(j, leader_id="L", leader=leader, webhook_for=lambda url: HOOK, now=NOW)


CASES = [
    Case("claim a queued job", job(Q), claim, R, {"attempts": 1, "lease_until": LATER}),
    Case("claim a due retry", job(Q, not_before=EARLIER, attempts=1), claim, R, {"attempts": 2}),
    Case("a retry not yet due stays queued", job(Q, not_before=LATER), claim, None),
    Case("claim a running job whose lease lapsed", job(R, attempts=1, lease_until=EARLIER), claim,
         R, {"attempts": 2}),
    Case("a running job under lease is not claimed (redelivery)", job(R, lease_until=LATER), claim,
         None),
    Case("a finished job is never claimed again", job(S), claim, None),
    Case("a cancelled job is never claimed", job(C), claim, None),
    Case("requeue the current attempt", job(R, attempts=2, lease_until=LATER),
         lambda j: t.requeue(j, attempt=2, note=NOTE, not_before=LATER, now=NOW), Q,
         {"error": NOTE, "lease_until": None, "not_before": LATER}),
    Case("a stale attempt cannot requeue", job(R, attempts=3),
         lambda j: t.requeue(j, attempt=2, note=NOTE, not_before=None, now=NOW), None),
    Case("succeed", job(R, attempts=1), lambda j: t.finish(j, outcome(S, attempt=1, result=ANSWER),
         now=NOW), S, {"result": ANSWER, "completed_at": NOW, "lease_until": None}, True),
    Case("a stale worker cannot finish", job(R, attempts=2),
         lambda j: t.finish(j, outcome(S, attempt=1, result=ANSWER), now=NOW), None),
    Case("fail", job(R, attempts=1), lambda j: t.finish(j, outcome(F, error=NOTE), now=NOW), F,
         {"error": NOTE}, True),
    Case("cancel a queued job", job(Q), lambda j: t.finish(j, outcome(C, expect=Q), now=NOW), C,
         {"completed_at": NOW}, True),
    Case("cancel races a claim and loses", job(R),
         lambda j: t.finish(j, outcome(C, expect=Q), now=NOW), None),
    Case("a finished job cannot finish twice", job(S),
         lambda j: t.finish(j, outcome(F, expect=R), now=NOW), None),
    Case("a refused submit gives its key back", job(Q, idempotency_key="k"),
         lambda j: t.finish(j, outcome(F, expect=Q, release_idempotency_key=True), now=NOW), F,
         {"idempotency_key": None}, True),
    Case("a batch cancel ends a queued job", job(Q, batch_id="b"),
         lambda j: t.end_queued(j, to=C, error=None, now=NOW), C, {"completed_at": NOW}, True),
    Case("a batch cancel leaves a running job", job(R, batch_id="b"),
         lambda j: t.end_queued(j, to=C, error=None, now=NOW), None),
    Case("a restart queues a running job again", job(R, lease_until=LATER),
         lambda j: t.restart(j, now=NOW), Q, {"lease_until": None}),
    Case("a restart leaves a queued job", job(Q), lambda j: t.restart(j, now=NOW), None),
    Case("retry a failed job from the start", job(F, attempts=3, error=NOTE, completed_at=EARLIER,
         webhook=WebhookDelivery(id="m")), lambda j: t.retry_failed(j, now=NOW), Q,
         {"attempts": 0, "error": None, "completed_at": None, "webhook": None,
          "retried_at": NOW}),
    Case("only a failed job is retried", job(S, result=ANSWER),
         lambda j: t.retry_failed(j, now=NOW), None),
    Case("a cancelled job is not retried", job(C), lambda j: t.retry_failed(j, now=NOW), None),
    Case("a queued job is not retried", job(Q), lambda j: t.retry_failed(j, now=NOW), None),
    Case("a retried follower runs on its own", job(F, coalesced=True, coalesced_with="L"),
         lambda j: t.retry_failed(j, now=NOW), Q, {"coalesced": False, "coalesced_with": None}),
    Case("a waiting follower is not claimed", job(Q, coalesced_with="L"), claim, None),
    Case("a released follower is claimed", job(Q, coalesced=False), claim, R, {"attempts": 1}),
    Case("follow: the claim is given back", job(R, attempts=1, lease_until=LATER),
         lambda j: follow(j, attempt=1), Q,
         {"attempts": 0, "coalesced_with": "L", "lease_until": None, "coalesced": False}),
    Case("a stale claim cannot follow", job(R, attempts=2), lambda j: follow(j, attempt=1), None),
    Case("a job does not follow itself", job(R, id="L", attempts=1),
         lambda j: follow(j, attempt=1), None),
    Case("a follower shares its leader's answer", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=job(S, id="L", result=ANSWER, attempts=1)), S,
         {"result": ANSWER, "coalesced": True, "completed_at": NOW, "webhook": HOOK}, True),
    Case("a follower shares its leader's LLM failure", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=job(F, id="L", error=REJECTED)), F,
         {"error": REJECTED, "coalesced": True}, True),
    Case("a follower waits while its leader runs", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=job(Q, id="L", attempts=1)), None),
    Case("a cancelled leader releases its follower", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=job(C, id="L")), Q,
         {"coalesced_with": None, "coalesced": False}),
    Case("an erased leader releases its follower", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=None), Q, {"coalesced_with": None}),
    Case("a leader that never ran releases its follower", job(Q, coalesced_with="L"),
         lambda j: settle(j, leader=job(F, id="L", error=EXHAUSTED)), Q, {"coalesced_with": None}),
    Case("a follower of another job is left alone", job(Q, coalesced_with="M"),
         lambda j: settle(j, leader=job(S, id="L", result=ANSWER)), None),
    Case("a follower cancelled meanwhile is left alone", job(C, coalesced_with="L"),
         lambda j: settle(j, leader=job(S, id="L", result=ANSWER)), None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision(case: Case) -> None:
    change = case.decide(case.before)

    if case.status is None:
        assert change is None
        return
    assert change is not None and change.before == case.before
    assert change.after.status is case.status and change.after.updated_at == NOW
    for name, value in case.fields.items():
        assert getattr(change.after, name) == value, name
    assert (change.usage is not None) is case.counts_usage


@pytest.mark.parametrize("case", [c for c in CASES if c.status is not None], ids=lambda c: c.name)
def test_a_batch_job_moves_its_counters_by_its_status_change(case: Case) -> None:
    in_batch = case.before.model_copy(update={"batch_id": "b1"})
    change = case.decide(in_batch)
    assert change is not None

    moved = change.before.status is not change.after.status
    expected = {change.before.status.value: -1, change.after.status.value: 1} if moved else {}
    assert change.counter_deltas == expected
    assert sum(change.counter_deltas.values()) == 0


def test_a_job_without_a_batch_moves_no_counters() -> None:
    change = t.claim(job(Q), lease_until=LATER, now=NOW)
    assert change is not None and change.counter_deltas == {}


def test_the_usage_of_an_ending_is_the_ended_job_once() -> None:
    change = t.finish(job(R, attempts=2), outcome(S, result=ANSWER), now=NOW)
    assert change is not None and change.usage is not None
    assert (change.usage.requests, change.usage.succeeded, change.usage.llm_calls) == (1, 1, 2)
    assert (change.usage.input_tokens, change.usage.provider) == (3, "gemini")


def test_a_cache_hit_counts_when_stored_and_a_queued_job_does_not() -> None:
    hit = job(S, cached=True, result=ANSWER, completed_at=NOW)
    counted = t.created_usage(hit)
    assert counted is not None and (counted.cache_hits, counted.llm_calls) == (1, 0)
    assert t.created_usage(job(Q)) is None


def test_only_a_released_key_is_reported() -> None:
    kept = t.finish(job(Q, idempotency_key="k"), outcome(C, expect=Q), now=NOW)
    released = t.finish(
        job(Q, idempotency_key="k"), outcome(F, expect=Q, release_idempotency_key=True), now=NOW
    )
    assert kept is not None and kept.released_key is None
    assert released is not None and released.released_key == "k"


def test_a_retried_job_counts_its_new_run_only_when_it_ends_again() -> None:
    failed = job(F, attempts=2, error=NOTE, completed_at=EARLIER)
    retried = t.retry_failed(failed, now=NOW)
    assert retried is not None and retried.usage is None  # the failure stays as counted
    claimed = t.claim(retried.after, lease_until=LATER, now=NOW)
    assert claimed is not None and claimed.after.attempts == 1
    done = t.finish(claimed.after, outcome(S, result=ANSWER), now=LATER)
    assert done is not None and done.usage is not None
    assert (done.usage.requests, done.usage.llm_calls) == (1, 1)  # not 3: no call twice


def test_a_shared_answer_counts_as_coalesced_without_tokens_or_calls() -> None:
    leader = job(S, id="L", attempts=1, result=ANSWER, completed_at=NOW)
    change = t.settle(
        job(Q, coalesced_with="L"), leader_id="L", leader=leader, webhook_for=lambda u: None,
        now=NOW,
    )  # fmt: skip
    assert change is not None and change.usage is not None
    counted = change.usage
    assert (counted.requests, counted.succeeded, counted.coalesced, counted.llm_calls) == (
        1,
        1,
        1,
        0,
    )
    assert (counted.input_tokens, counted.output_tokens, sum(counted.latency)) == (0, 0, 0)
    assert counted.provider == "gemini"  # the provider whose answer it shares


def test_only_ended_jobs_may_be_deleted() -> None:
    assert [t.deletable(job(status)) for status in (Q, R, S, F, C)] == [
        False, False, True, True, True
    ]  # fmt: skip
