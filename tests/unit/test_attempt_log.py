"""A job's attempt log, as the state machine writes it: every attempt that did not succeed
(retrying, failed, lost), and nothing for an attempt that succeeded or was given back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shared import transitions as t
from shared.models import (
    ATTEMPT_LOG_LENGTH,
    ATTEMPT_MESSAGE_CHARS,
    AttemptOutcome,
    AttemptRecord,
    ChatRequest,
    Completion,
    Job,
    JobError,
    JobStatus,
    Message,
)

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
NOTE = JobError(code="retrying", message="attempt failed; next attempt soon")
BUSY = t.AttemptFailure(code="http_503", message="gemini: HTTP 503 overloaded", provider="gemini")
ANSWER = Completion(content="hi", provider="gemini", model="g")
R = JobStatus.running


def queued() -> Job:
    request = ChatRequest(messages=[Message(role="user", content="hello")])
    return Job(tenant="t1", request=request, created_at=T0, updated_at=T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claimed(job: Job, when: datetime) -> Job:
    change = t.claim(job, lease_until=when + LEASE, now=when)
    assert change is not None
    return change.after


def requeued(job: Job, when: datetime, failure: t.AttemptFailure = BUSY) -> Job:
    change = t.requeue(
        job, attempt=job.attempts, note=NOTE, not_before=None, now=when, failure=failure
    )
    assert change is not None
    return change.after


def finished(job: Job, outcome: t.JobOutcome, when: datetime) -> Job:
    change = t.finish(job, outcome, now=when)
    assert change is not None
    return change.after


def record(
    n: int, start: float, end: float, outcome: AttemptOutcome, **fields: str
) -> AttemptRecord:
    return AttemptRecord(
        attempt=n, started_at=at(start), ended_at=at(end), outcome=outcome, **fields
    )


def test_a_job_answered_the_first_time_logs_nothing_and_stores_no_log() -> None:
    done = finished(claimed(queued(), at(1)), t.JobOutcome(JobStatus.succeeded, R), at(2))
    assert done.attempt_log == []
    assert "attempt_log" not in json.loads(done.model_dump_json())
    assert Job.model_validate_json(done.model_dump_json()) == done


def test_retried_twice_then_failed_logs_each_attempt_with_its_claim_and_end() -> None:
    job = requeued(claimed(queued(), at(1)), at(2))
    timeout = t.AttemptFailure(code="timeout", message="the LLM call timed out")
    job = requeued(claimed(job, at(10)), at(40), timeout)
    unavailable = JobError(code="llm_unavailable", message="all LLM providers failed")
    outcome = t.JobOutcome(JobStatus.failed, R, attempt=3, error=unavailable, provider="gemini")
    job = finished(claimed(job, at(50)), outcome, at(51))

    retrying, failed = AttemptOutcome.retrying, AttemptOutcome.failed
    assert job.attempt_log == [
        record(1, 1, 2, retrying, provider="gemini", code="http_503",
               message="gemini: HTTP 503 overloaded"),
        record(2, 10, 40, retrying, code="timeout", message="the LLM call timed out"),
        record(3, 50, 51, failed, provider="gemini", code="llm_unavailable",
               message="all LLM providers failed"),
    ]  # fmt: skip


def test_a_lost_attempt_is_logged_when_its_lapsed_lease_is_claimed_again() -> None:
    first = claimed(queued(), at(1))
    again = claimed(first, at(1) + LEASE + timedelta(seconds=1))  # its worker died
    done = finished(again, t.JobOutcome(JobStatus.succeeded, R, result=ANSWER), at(90))
    assert done.attempts == 2
    assert done.attempt_log == [
        record(1, 1, 62, AttemptOutcome.lost, code="lease_expired",
               message=t.LEASE_EXPIRED.message),
    ]  # fmt: skip


def test_a_restart_logs_the_running_attempt_as_lost() -> None:
    change = t.restart(claimed(queued(), at(1)), now=at(5))
    assert change is not None
    (lost,) = change.after.attempt_log
    assert (lost.attempt, lost.outcome, lost.code) == (1, AttemptOutcome.lost, "process_restarted")


def test_what_spends_no_attempt_is_not_logged() -> None:
    running = claimed(queued(), at(1))
    deferred = t.defer(running, attempt=1, note=NOTE, not_before=at(30), now=at(2))
    followed = t.follow(running, attempt=1, leader_id="job_leader", now=at(2))
    cancelled = t.finish(queued(), t.JobOutcome(JobStatus.cancelled, JobStatus.queued), now=at(2))
    refused = JobError(code="queue_unavailable", message="refused")
    never_ran = t.finish(
        queued(), t.JobOutcome(JobStatus.failed, JobStatus.queued, error=refused), now=at(2)
    )
    for change in (deferred, followed, cancelled, never_ran):
        assert change is not None and change.after.attempt_log == []


def test_a_stale_attempt_logs_nothing() -> None:
    running = claimed(queued(), at(1))
    stale = t.requeue(running, attempt=0, note=NOTE, not_before=None, now=at(2), failure=BUSY)
    assert stale is None


def test_the_log_keeps_the_latest_attempts_with_short_messages() -> None:
    job = queued()
    long = t.AttemptFailure(code="provider_error", message="x" * 1000)
    for n in range(ATTEMPT_LOG_LENGTH + 5):
        job = requeued(claimed(job, at(10 * n)), at(10 * n + 1), long)
    assert len(job.attempt_log) == ATTEMPT_LOG_LENGTH
    assert [r.attempt for r in job.attempt_log] == list(range(6, ATTEMPT_LOG_LENGTH + 6))
    message = job.attempt_log[0].message
    assert message is not None and len(message) == ATTEMPT_MESSAGE_CHARS
    assert message.endswith("…")


def test_a_requeue_without_a_failure_logs_the_notes_message() -> None:
    change = t.requeue(claimed(queued(), at(1)), attempt=1, note=NOTE, not_before=None, now=at(2))
    assert change is not None
    (entry,) = change.after.attempt_log
    assert (entry.code, entry.message) == (None, NOTE.message)


def test_retry_failed_keeps_the_log_and_the_new_run_counts_from_one() -> None:
    rejected = JobError(code="llm_rejected", message="blocked")
    outcome = t.JobOutcome(JobStatus.failed, R, error=rejected, provider="gemini")
    failed = finished(claimed(queued(), at(1)), outcome, at(2))
    retried = t.retry_failed(failed, now=at(10))
    assert retried is not None
    again = requeued(claimed(retried.after, at(11)), at(12))
    assert [(r.attempt, r.outcome) for r in again.attempt_log] == [
        (1, AttemptOutcome.failed),
        (1, AttemptOutcome.retrying),
    ]
