"""Requests per second at the API: the bare endpoint, cache hits, and accepted submits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.report import Row
from bench.service import AUTH, JSON, Api, CpuWindow, Run, cpu_window

CONNECTIONS = 32
WARMUP_S = 1.0
SECONDS = 4.0


def _body(content: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": content}]})


def rate(run: Run, api: Api, body: str, headers: dict[str, str]) -> dict[str, Any]:
    spec = {
        "mode": "rate",
        "host": "127.0.0.1",
        "port": api.port,
        "method": "POST",
        "path": "/v1/jobs",
        "headers": headers,
        "body": body,
        "connections": CONNECTIONS,
        "warmup_s": WARMUP_S,
        "seconds": SECONDS,
    }
    return run.load(spec)


@dataclass
class Bare:
    per_s: float
    cpu_ms: float  # server CPU per answer
    cpu: dict[str, float]

    def __str__(self) -> str:
        return f"{self.per_s:,.0f}/s bare endpoint ({self.cpu_ms:.2f} ms CPU each)"


def cpu_ms_each(cpu: CpuWindow, process: str, result: dict[str, Any], status: str) -> float:
    answers = result["statuses"].get(status, 0)
    return 1000 * cpu.used[process] / answers if answers else float("nan")


def bare_endpoint(run: Run) -> Bare:
    api = run.bare_api()
    try:
        with cpu_window(server=api.proc) as cpu:
            result = rate(run, api, _body("prompt {n}"), {"Content-Type": "application/json"})
    finally:
        run.fleet.stop(api.proc)
    per_s = result["per_s"].get("202", 0.0)
    return Bare(per_s, cpu_ms_each(cpu, "server", result, "202"), cpu.share())


def cache_hits(run: Run, bare: Bare) -> Row:
    api = run.api("api-cache-hit")
    try:
        with api.http() as http:
            job = http.post("/v1/jobs", json={"messages": [{"role": "user", "content": "hit"}]})
            http.get(f"/v1/jobs/{job.json()['id']}", params={"wait": 10})
        with cpu_window(api=api.proc) as cpu:
            result = rate(run, api, _body("hit"), JSON)
    finally:
        run.fleet.stop(api.proc)
    hits = result["per_s"].get("200", 0.0)
    return Row(
        "cache-hit answers/s (embedded)",
        str(bare),
        f"{hits:,.0f}/s ({cpu_ms_each(cpu, 'api', result, '200'):.2f} ms CPU each)",
        hits / bare.per_s,
        0.5,
        cpu=cpu.share(),
        details=result,
    )


def submits(run: Run, bare: Bare, *, redis: bool) -> Row:
    api = run.api("api-submits-redis" if redis else "api-submits", redis=redis)
    try:
        with cpu_window(api=api.proc, redis=run.redis_pid) as cpu:
            result = rate(run, api, _body("prompt {n}"), JSON)
        with api.http() as http:
            backlog = _backlog(http.get("/metrics").text)
    finally:
        run.fleet.stop(api.proc)
    accepted = result["per_s"].get("202", 0.0)
    where = "Redis, API alone" if redis else "embedded"
    return Row(
        f"accepted submits/s ({where})",
        str(bare),
        f"{accepted:,.0f}/s ({cpu_ms_each(cpu, 'api', result, '202'):.2f} ms CPU each)",
        accepted / bare.per_s,
        0.3,
        cpu=cpu.share() if redis else {"api": cpu.share()["api"], "load": cpu.share()["load"]},
        details={**result, "backlog_after": backlog},
    )


def _backlog(metrics: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith("chatjobs_jobs{"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


__all__ = ["AUTH", "bare_endpoint", "cache_hits", "submits"]
