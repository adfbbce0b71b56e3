"""Priorities and tenant turns under load (docs/adr/0015), in the Redis layout (one API, one worker)
and embedded (the API runs the jobs), WORKER_CONCURRENCY 16, a stub LLM that answers in 50 ms.

Tenant A queues a 5,000-job batch; meanwhile tenant B sends `high` single jobs one after another
(submit, then wait for the job), and a 200-job `normal` batch. Each is measured against the same
work on the idle service, in the same run:
- B's high singles, p50 and p95 of submit → succeeded, against idle (goal: under 2x);
- B's normal batch while A's batch is `low`: its time to complete against idle, and how much of
  A's batch was done by then;
- B's normal batch while A's batch is `normal` too: the tenants take turns, so B's batch should
  take about twice its idle time (it shares the workers with A), not wait for A's 5,000 jobs.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx

from bench.procs import wait_until
from bench.report import Row
from bench.service import Api, Run, cpu_window

A_JOBS = 5_000
B_SINGLES = 40
WARMUP = 10
B_BATCH = 200
LLM_DELAY_S = 0.05
CONCURRENCY = 16
KEYS = {"A": "prio-key-a", "B": "prio-key-b"}
ENV = {
    "API_KEYS": ",".join(f"tenant-{t.lower()}:{k}" for t, k in KEYS.items()),
    "WORKER_CONCURRENCY": str(CONCURRENCY),
    "CACHE_BACKEND": "none",
}


def client(api: Api, tenant: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    return httpx.Client(base_url=api.url, headers=headers, timeout=120, trust_env=False)


def message(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def ndjson(label: str, count: int) -> bytes:
    lines = (
        json.dumps(
            {"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"{label} {n}"}]}
        )
        for n in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


def submit_batch(http: httpx.Client, label: str, count: int, priority: str) -> str:
    headers = {"Content-Type": "application/x-ndjson"}
    answer = http.post(
        "/v1/batches", params={"priority": priority}, content=ndjson(label, count), headers=headers
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def batch_status(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
    return answer


def time_batch(http: httpx.Client, label: str, priority: str) -> float:
    """Seconds from submit to `completed` of a B_BATCH-job batch."""
    started = time.perf_counter()
    batch_id = submit_batch(http, label, B_BATCH, priority)
    wait_until(lambda: batch_status(http, batch_id)["status"] == "completed", 300, 0.02)
    return time.perf_counter() - started


def singles(http: httpx.Client, label: str, count: int = B_SINGLES) -> dict[str, float]:
    """`count` high-priority jobs, one after another: each submitted, then waited for."""
    latencies = []
    for n in range(count):
        body = {"messages": [{"role": "user", "content": f"{label} {n}"}], "priority": "high"}
        started = time.perf_counter()
        job = http.post("/v1/jobs", json=body | {"cache": False}).json()
        while job["status"] not in ("succeeded", "failed"):
            job = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
        assert job["status"] == "succeeded", job
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
    }


def started_a_batch(http: httpx.Client, priority: str) -> str:
    """A's big batch, queued and running (its first jobs done)."""
    batch_id = submit_batch(http, f"A {priority} {time.time()}", A_JOBS, priority)
    wait_until(lambda: batch_status(http, batch_id)["counts"]["succeeded"] >= CONCURRENCY, 120)
    return batch_id


def measure(run: Run, *, redis: bool) -> dict[str, Any]:
    run.flush_redis()
    stub, url = run.stub_llm(LLM_DELAY_S)
    env = ENV | {"GEMINI_API_KEY": "bench", "GEMINI_BASE_URL": url}
    api = run.api("api-priority", redis=redis, **env)
    worker = run.worker("worker-priority", api, **env) if redis else api.proc
    result: dict[str, Any] = {}
    try:
        with client(api, "A") as a, client(api, "B") as b:
            singles(b, "warm-up", WARMUP)  # connections, imports, the first store writes
            result["idle_singles"] = singles(b, "idle single")
            result["idle_batch_s"] = time_batch(b, "idle batch", "normal")
            watched = {"api": api.proc, "llm_stub": stub} | ({"worker": worker} if redis else {})
            with cpu_window(**watched) as cpu:
                low = started_a_batch(a, "low")
                result["busy_singles"] = singles(b, "busy single")
                result["busy_batch_s"] = time_batch(b, "busy batch", "normal")
                result["a_low_when_b_done"] = batch_status(a, low)["counts"]
            result["cpu"] = cpu.share()
            a.post(f"/v1/batches/{low}/cancel").raise_for_status()
            normal = started_a_batch(a, "normal")
            result["turns_batch_s"] = time_batch(b, "turns batch", "normal")
            result["a_normal_when_b_done"] = batch_status(a, normal)["counts"]
            a.post(f"/v1/batches/{normal}/cancel").raise_for_status()
    finally:
        for proc in [*([worker] if redis else []), api.proc, stub]:
            run.fleet.stop(proc)
    return result


def priority_rows(run: Run) -> list[Row]:
    return layout_rows(run, redis=True) + layout_rows(run, redis=False)


def layout_rows(run: Run, *, redis: bool) -> list[Row]:
    m = measure(run, redis=redis)
    idle, busy = m["idle_singles"], m["busy_singles"]
    where = f"A's {A_JOBS:,}-job low batch running ({'Redis' if redis else 'embedded'})"
    rows = [
        Row(
            f"B's high singles {q}, {where}",
            f"{idle[f'{q}_ms']:.0f} ms idle",
            f"{busy[f'{q}_ms']:.0f} ms",
            busy[f"{q}_ms"] / idle[f"{q}_ms"],
            2.0,
            higher_is_better=False,
            cpu=m["cpu"] if q == "p50" else {},
            details=m if q == "p50" else {},
        )
        for q in ("p50", "p95")
    ]
    done_low = m["a_low_when_b_done"]["succeeded"]
    done_normal = m["a_normal_when_b_done"]["succeeded"]
    rows.append(
        Row(
            f"B's {B_BATCH}-job normal batch, {where}",
            f"{m['idle_batch_s']:.2f} s idle",
            f"{m['busy_batch_s']:.2f} s (A: {done_low:,} done)",
            m["busy_batch_s"] / m["idle_batch_s"],
            2.0,
            higher_is_better=False,
        )
    )
    rows.append(
        Row(
            "  … A's batch normal too: tenants take turns",
            f"{m['idle_batch_s']:.2f} s idle",
            f"{m['turns_batch_s']:.2f} s (A: {done_normal:,} done)",
            m["turns_batch_s"] / m["idle_batch_s"],
            None,
            higher_is_better=False,
        )
    )
    return rows
