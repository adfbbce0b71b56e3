"""The overview's last-hour and provider figures, computed from known jobs and heartbeats: each
figure the console and GET /v1/admin/overview show, against what it must be for these inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.heartbeats import ProviderHealth
from shared.models import ChatRequest, Completion, Job, JobError, JobStatus, Message
from shared.overview import WorkerFigures, hour_figures, percentile, provider_figures

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def job(status: JobStatus, took_ms: int | None = None, **fields: Any) -> Job:
    created = NOW - timedelta(minutes=10)
    done = created + timedelta(milliseconds=took_ms) if took_ms is not None else None
    request = ChatRequest(messages=[Message(role="user", content="hello")])
    return Job(
        tenant="t1", request=request, status=status, created_at=created, completed_at=done, **fields
    )


def answer(latency_ms: int, provider: str = "gemini", fallback: bool = False) -> Completion:
    return Completion(
        content="hi", provider=provider, model="m", latency_ms=latency_ms, fallback=fallback
    )


def test_the_last_hours_figures_of_known_jobs() -> None:
    jobs = [
        *(job(JobStatus.succeeded, 100 * n, result=answer(10 * n)) for n in range(1, 9)),
        job(JobStatus.succeeded, 900, result=answer(90, "openrouter", fallback=True)),
        job(JobStatus.succeeded, 5, result=answer(1), cached=True),  # no LLM call of its own
        job(JobStatus.succeeded, 7, result=answer(1), coalesced=True),
        job(JobStatus.failed, 1_000, error=JobError(code="llm_rejected", message="no")),
        job(JobStatus.failed, 1_100, error=JobError(code="llm_rejected", message="no")),
        job(JobStatus.failed, 1_200, error=JobError(code="llm_unavailable", message="down")),
        job(JobStatus.queued),
        job(JobStatus.running),
    ]
    figures = hour_figures(jobs, sampled=False)
    assert (figures.jobs, figures.finished, figures.sampled) == (16, 14, False)
    assert figures.throughput_per_min == round(14 / 60, 2)
    spans = [100.0 * n for n in range(1, 10)] + [5.0, 7.0, 1_000.0, 1_100.0, 1_200.0]
    assert figures.latency_ms_p50 == percentile(spans, 50) == 500
    assert figures.latency_ms_p95 == percentile(spans, 95) == 1_200
    # the LLM's own latency counts only the 9 answers that called it (not the cached, coalesced)
    assert (figures.llm_latency_ms_p50, figures.llm_latency_ms_p95) == (50, 90)
    assert figures.errors_by_code == {"llm_rejected": 2, "llm_unavailable": 1}
    assert figures.error_rate == round(3 / 14, 4)
    assert figures.cache_hit_ratio == round(1 / 16, 4)
    assert figures.fallback_rate == round(1 / 9, 4)


def test_an_hour_without_ended_jobs_has_no_latency_and_no_rates() -> None:
    figures = hour_figures([job(JobStatus.queued)], sampled=True)
    assert figures.sampled and figures.finished == 0 and figures.throughput_per_min == 0
    assert figures.latency_ms_p50 is None and figures.llm_latency_ms_p95 is None
    assert (figures.error_rate, figures.cache_hit_ratio, figures.fallback_rate) == (0, 0, 0)


def worker(name: str, alive: bool, *health: ProviderHealth) -> WorkerFigures:
    return WorkerFigures(
        id=name,
        kind="arq",
        host="h",
        pid=1,
        started_at=NOW,
        last_beat=NOW,
        interval_s=10,
        providers=list(health),
        alive=alive,
    )


def test_providers_over_live_workers_show_the_worst_circuit_and_add_up() -> None:
    early, late = NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)
    one = ProviderHealth(name="gemini", circuit="closed", calls=60, fallbacks=3, recent_errors=1)
    two = ProviderHealth(
        name="gemini",
        circuit="open",
        consecutive_failures=5,
        recent_errors=5,
        calls=40,
        fallbacks=7,
        last_error="HTTP 503",
        last_error_at=late,
    )
    three = ProviderHealth(
        name="gemini", circuit="half_open", last_error="timeout", last_error_at=early
    )
    dead = ProviderHealth(name="gemini", circuit="open", calls=1_000, recent_errors=99)
    fallback = ProviderHealth(name="openrouter", circuit="closed", calls=10)
    workers = [
        worker("w1", True, one, fallback),
        worker("w2", True, two),
        worker("w3", True, three),
        worker("gone", False, dead),  # a worker not heard from counts for nothing
    ]
    gemini, openrouter = provider_figures(workers)
    assert (gemini.name, gemini.circuit, gemini.workers_open) == ("gemini", "open", 1)
    assert (gemini.calls, gemini.fallbacks, gemini.recent_errors) == (100, 10, 6)
    assert gemini.consecutive_failures == 5
    assert (gemini.last_error, gemini.last_error_at) == ("HTTP 503", late)  # the latest error
    assert gemini.fallback_rate == 0.1
    assert (openrouter.circuit, openrouter.calls, openrouter.fallback_rate) == ("closed", 10, 0)


def test_percentiles_are_nearest_rank() -> None:
    """An even count whose rank falls exactly on a value takes that value (round(7.5) took the
    8th of 14: Python rounds halves to even)."""
    fourteen = [float(n) for n in range(1, 15)]
    assert percentile(fourteen, 50) == 7
    assert percentile(fourteen, 95) == 14
    assert percentile([float(n) for n in range(1, 21)], 95) == 19
    assert percentile([3.0], 50) == percentile([3.0], 99) == 3
    assert percentile([], 50) is None
