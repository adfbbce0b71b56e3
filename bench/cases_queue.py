"""Through the queue: submit → succeeded latency, and batch jobs per second, against bare arq."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.procs import run_json
from bench.report import Row
from bench.service import JSON, Api, Run, cpu_window
from worker.arq_options import POLL_DELAY_S

LATENCY_JOBS = 300
DEFAULT_POLL_JOBS = 30
TUNED_POLL_S = 0.01
ARQ_DEFAULT_POLL_S = 0.5
CONCURRENCY = 16  # WORKER_CONCURRENCY's default
BATCH_JOBS = 5_000
SLOW_JOBS = 3_000
SLOW_LLM_S = 0.1
SLOW_CONCURRENCY = 50


def bare_latency(run: Run, poll_s: float, count: int) -> dict[str, Any]:
    run.flush_redis()
    worker = run.bare_worker(poll_s, CONCURRENCY)
    try:
        result = run_json(["-m", "bench.bare_arq", "latency", run.redis_url, str(count)])
    finally:
        run.fleet.stop(worker)
    latency: dict[str, Any] = result["latency"]
    return latency


def chain(run: Run, api: Api, count: int = LATENCY_JOBS) -> dict[str, Any]:
    spec = {"mode": "chain", "host": "127.0.0.1", "port": api.port, "warmup": 20, "count": count}
    return run.load(spec | {"headers": {"Authorization": JSON["Authorization"]}})


def latency_rows(run: Run, tuned: dict[str, Any], *, redis: bool) -> list[Row]:
    run.flush_redis()
    api = run.api("api-latency-redis" if redis else "api-latency", redis=redis)
    worker = run.worker("worker-latency", api) if redis else None
    try:
        watched = {"api": api.proc} | ({"worker": worker} if worker else {})
        with cpu_window(**watched) as cpu:
            result = chain(run, api)
    finally:
        if worker is not None:
            run.fleet.stop(worker)
        run.fleet.stop(api.proc)
    where = "Redis, one worker" if redis else "embedded"
    ours, base = result["latency"], tuned
    details = {"chatjobs": result, "bare_arq_tuned": tuned}
    return [
        Row(
            f"submit → succeeded {q} ({where})",
            f"{base[f'{q}_ms']:.1f} ms bare arq, poll {TUNED_POLL_S} s",
            f"{ours[f'{q}_ms']:.1f} ms",
            ours[f"{q}_ms"] / base[f"{q}_ms"],
            goal,
            higher_is_better=False,
            cpu=cpu.share(),
            details=details,
        )
        for q, goal in (("p50", 2.0 if redis else 1.0), ("p99", 3.0 if redis else 2.0))
    ]


def defaults_row(redis_p50: Row, default: dict[str, Any]) -> Row:
    """For information: the Redis-mode p50 against bare arq with arq's own defaults."""
    ours = redis_p50.details["chatjobs"]["latency"]["p50_ms"]
    return Row(
        "  … p50 vs bare arq with arq's defaults",
        f"{default['p50_ms']:.1f} ms bare arq, poll {ARQ_DEFAULT_POLL_S} s",
        f"{ours:.1f} ms",
        ours / default["p50_ms"],
        None,
        higher_is_better=False,
        details={"bare_arq_defaults": default},
    )


def bare_drain(run: Run, poll_s: float, max_jobs: int, count: int) -> dict[str, Any]:
    run.flush_redis()
    worker = run.bare_worker(poll_s, max_jobs)
    try:
        with cpu_window(worker=worker, redis=run.redis_pid) as cpu:
            result = run_json(["-m", "bench.bare_arq", "drain", run.redis_url, str(count)])
    finally:
        run.fleet.stop(worker)
    return result | {"cpu": cpu.share()}


def batch_throughput(
    run: Run, count: int, workers: int, concurrency: int, llm_delay_s: float | None
) -> dict[str, Any]:
    """Submit one NDJSON batch of `count` prompts; jobs per second until it is completed."""
    run.flush_redis()
    env: dict[str, str] = {"WORKER_CONCURRENCY": str(concurrency)}
    stub = None
    if llm_delay_s is not None:
        stub, url = run.stub_llm(llm_delay_s)
        env |= {"GEMINI_API_KEY": "bench", "GEMINI_BASE_URL": url}
    api = run.api("api-batch", redis=True, **env)
    procs = [run.worker(f"worker-batch-{n}", api, **env) for n in range(workers)]
    lines = (
        json.dumps({"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"p {n}"}]})
        for n in range(count)
    )
    body = ("\n".join(lines) + "\n").encode()
    watched: dict[str, Any] = {"api": api.proc, "redis": run.redis_pid}
    watched |= {f"worker{n + 1}": p for n, p in enumerate(procs)}
    if stub is not None:
        watched["llm_stub"] = stub
    try:
        with api.http() as http, cpu_window(**watched) as cpu:
            started = time.perf_counter()
            headers = {**JSON, "Content-Type": "application/x-ndjson"}
            batch = http.post("/v1/batches", content=body, headers=headers).json()
            accepted = time.perf_counter() - started
            while batch["status"] != "completed":
                time.sleep(0.02)
                batch = http.get(f"/v1/batches/{batch['id']}").json()
            elapsed = time.perf_counter() - started
    finally:
        for proc in [*procs, api.proc, *([stub] if stub else [])]:
            run.fleet.stop(proc)
    return {
        "jobs": count,
        "elapsed_s": elapsed,
        "accept_s": accepted,
        "per_s": count / elapsed,
        "counts": batch["counts"],
        "cpu": cpu.share(),
    }


def batch_rows(run: Run) -> list[Row]:
    bare = bare_drain(run, POLL_DELAY_S, CONCURRENCY, BATCH_JOBS)
    one = batch_throughput(run, BATCH_JOBS, 1, CONCURRENCY, None)
    two = batch_throughput(run, BATCH_JOBS, 2, CONCURRENCY, None)
    ceiling = SLOW_CONCURRENCY / SLOW_LLM_S
    slow_one = batch_throughput(run, SLOW_JOBS, 1, SLOW_CONCURRENCY, SLOW_LLM_S)
    slow_two = batch_throughput(run, SLOW_JOBS, 2, SLOW_CONCURRENCY, SLOW_LLM_S)
    base = f"{bare['per_s']:,.0f}/s bare arq ×{CONCURRENCY}, poll {POLL_DELAY_S} s"
    return [
        Row(
            "batch jobs/s, instant LLM (Redis, 1 worker)",
            base,
            f"{one['per_s']:,.0f}/s",
            one["per_s"] / bare["per_s"],
            0.5,
            cpu=one["cpu"],
            details={"chatjobs": one, "bare": bare},
        ),
        Row(
            "  … 2 workers vs 1 worker",
            f"{one['per_s']:,.0f}/s 1 worker",
            f"{two['per_s']:,.0f}/s",
            two["per_s"] / one["per_s"],
            None,
            cpu=two["cpu"],
            details={"chatjobs": two},
        ),
        Row(
            f"batch jobs/s, {SLOW_LLM_S * 1000:.0f} ms LLM (1 worker × {SLOW_CONCURRENCY})",
            f"{ceiling:,.0f}/s ceiling",
            f"{slow_one['per_s']:,.0f}/s",
            slow_one["per_s"] / ceiling,
            0.9,
            cpu=slow_one["cpu"],
            details={"chatjobs": slow_one},
        ),
        Row(
            f"  … 2 workers × {SLOW_CONCURRENCY}",
            f"{2 * ceiling:,.0f}/s ceiling",
            f"{slow_two['per_s']:,.0f}/s",
            slow_two["per_s"] / (2 * ceiling),
            None,
            cpu=slow_two["cpu"],
            details={"chatjobs": slow_two},
        ),
    ]
