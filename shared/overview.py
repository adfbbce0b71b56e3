"""The operator's overview as data, computed by plain functions from what the stores hand back:
the backlog, the last hour's jobs (a bounded sample, newest first), and workers' heartbeats."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from shared.admin_queries import QueueBacklog
from shared.heartbeats import ProviderHealth, WorkerBeat
from shared.models import Job, JobStatus

WINDOW = timedelta(hours=1)
SAMPLE = 5_000  # newest jobs of the window read at most (more: the figures are of these)
CIRCUIT_ORDER = {"open": 3, "half_open": 2, "closed": 1, "none": 0}


class QueueFigures(BaseModel):
    """One queue's backlog."""

    queued: int = Field(description="Jobs waiting for a worker.", examples=[12])


class BacklogFigures(BaseModel):
    """Jobs waiting and running, by queue."""

    singles: QueueFigures = Field(description="Jobs submitted one by one (and OpenAI chat).")
    batch: QueueFigures = Field(description="Jobs of batches.")
    running: int = Field(description="Jobs a worker is answering now.", examples=[4])
    oldest_queued_age_s: float | None = Field(
        description="How long the oldest queued job has waited; null: none waits.",
        examples=[3.5],
    )


class HourFigures(BaseModel):
    """Jobs submitted within the last hour."""

    jobs: int = Field(description="Jobs submitted in the window (read: at most 5,000).")
    sampled: bool = Field(description="True when the window held more jobs than were read.")
    finished: int = Field(description="Of those, jobs that have ended.")
    throughput_per_min: float = Field(description="Jobs ended per minute over the window.")
    latency_ms_p50: int | None = Field(description="Median submit-to-end time of ended jobs.")
    latency_ms_p95: int | None = Field(description="95th percentile submit-to-end time.")
    llm_latency_ms_p50: int | None = Field(description="Median LLM call latency.")
    llm_latency_ms_p95: int | None = Field(description="95th percentile LLM call latency.")
    errors_by_code: dict[str, int] = Field(description="Failed jobs by error code.")
    error_rate: float = Field(description="Failed jobs over ended jobs (0 to 1).")
    cache_hit_ratio: float = Field(description="Jobs answered from the cache (0 to 1).")
    fallback_rate: float = Field(description="LLM answers that came from the fallback (0 to 1).")


class ProviderFigures(ProviderHealth):
    """A provider over every live worker: the worst circuit, errors and calls added up."""

    workers_open: int = Field(0, description="Live workers whose circuit for it is open.")
    fallback_rate: float = Field(0.0, description="Its calls the fallback took over (0 to 1).")


class WorkerFigures(WorkerBeat):
    """A worker's latest heartbeat, and whether it is still alive."""

    alive: bool = Field(description="Heard from within three heartbeats.")


class Overview(BaseModel):
    """GET /v1/admin/overview: the service at a glance."""

    generated_at: datetime = Field(description="When these figures were read.")
    backlog: BacklogFigures = Field(description="The queues now.")
    last_hour: HourFigures = Field(description="The last hour's jobs: throughput, latency, errors.")
    providers: list[ProviderFigures] = Field(description="LLM providers, from live workers.")
    workers: list[WorkerFigures] = Field(description="Workers heard from in the last hour.")


def percentile(values: list[float], pct: float) -> int | None:
    """The nearest-rank percentile: the smallest value with at least `pct` % of them at or
    below it (the product first, so 50 % of 14 is rank 7 exactly)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct * len(ordered) / 100)))
    return round(ordered[rank - 1])


def backlog_figures(backlog: QueueBacklog, now: datetime) -> BacklogFigures:
    oldest = backlog.oldest_queued_at
    return BacklogFigures(
        singles=QueueFigures(queued=backlog.queued_single),
        batch=QueueFigures(queued=backlog.queued_batch),
        running=backlog.running,
        oldest_queued_age_s=max((now - oldest).total_seconds(), 0.0) if oldest else None,
    )


def hour_figures(jobs: list[Job], sampled: bool, window: timedelta = WINDOW) -> HourFigures:
    ended = [j for j in jobs if j.status.is_terminal and j.completed_at is not None]
    failed = [j for j in ended if j.status is JobStatus.failed]
    answered = [j for j in ended if j.result is not None and not j.cached and not j.coalesced]
    spans = [
        ((j.completed_at or j.created_at) - j.created_at).total_seconds() * 1000 for j in ended
    ]
    llm = [float(j.result.latency_ms) for j in answered if j.result is not None]
    codes = Counter(j.error.code if j.error else "unknown" for j in failed)
    fallbacks = [j for j in answered if j.result is not None and j.result.fallback]
    return HourFigures(
        jobs=len(jobs),
        sampled=sampled,
        finished=len(ended),
        throughput_per_min=round(len(ended) / (window.total_seconds() / 60), 2),
        latency_ms_p50=percentile(spans, 50),
        latency_ms_p95=percentile(spans, 95),
        llm_latency_ms_p50=percentile(llm, 50),
        llm_latency_ms_p95=percentile(llm, 95),
        errors_by_code=dict(sorted(codes.items())),
        error_rate=_ratio(len(failed), len(ended)),
        cache_hit_ratio=_ratio(len([j for j in jobs if j.cached]), len(jobs)),
        fallback_rate=_ratio(len(fallbacks), len(answered)),
    )


def provider_figures(workers: list[WorkerFigures]) -> list[ProviderFigures]:
    by_name: dict[str, ProviderFigures] = {}
    for worker in (w for w in workers if w.alive):
        for health in worker.providers:
            held = by_name.get(health.name)
            opened = int(health.circuit == "open")
            if held is None:
                by_name[health.name] = ProviderFigures(**health.model_dump(), workers_open=opened)
                continue
            worse = CIRCUIT_ORDER[health.circuit] > CIRCUIT_ORDER[held.circuit]
            later = _later(health, held)
            by_name[health.name] = held.model_copy(
                update={
                    "circuit": health.circuit if worse else held.circuit,
                    "consecutive_failures": max(
                        held.consecutive_failures, health.consecutive_failures
                    ),
                    "recent_errors": held.recent_errors + health.recent_errors,
                    "calls": held.calls + health.calls,
                    "fallbacks": held.fallbacks + health.fallbacks,
                    "workers_open": held.workers_open + opened,
                    "last_error": health.last_error if later else held.last_error,
                    "last_error_at": health.last_error_at if later else held.last_error_at,
                }
            )
    return [
        p.model_copy(update={"fallback_rate": _ratio(p.fallbacks, p.calls)})
        for p in sorted(by_name.values(), key=lambda p: p.name)
    ]


def _later(health: ProviderHealth, held: ProviderHealth) -> bool:
    if health.last_error_at is None:
        return False
    return held.last_error_at is None or health.last_error_at > held.last_error_at


def worker_figures(beats: list[WorkerBeat], now: datetime) -> list[WorkerFigures]:
    return [WorkerFigures(**beat.model_dump(), alive=beat.alive_at(now)) for beat in beats]


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
