"""The load generator, run as its own process: `python -m bench.load '<json spec>'` prints JSON.

- `rate`: `connections` keep-alive connections send the same request (the body may hold `{n}`,
  replaced by a request counter) back to back for `seconds` after `warmup_s`; counts answers by
  status.
- `chain`: `count` times, one after the other: POST a job, then GET it with `?wait=` until it is
  terminal; the submit → succeeded latency of each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from itertools import count
from typing import Any

import uvloop

from bench.http import Connection, encode, summary


async def rate(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    template: str = spec.get("body", "")
    numbers = count()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    measuring = False
    stop_at = time.monotonic() + spec["warmup_s"] + spec["seconds"]
    limit = spec.get("max_requests") or float("inf")
    sent = 0

    def request() -> bytes:
        body = template.replace("{n}", str(next(numbers))).encode() if template else b""
        return encode(spec["method"], spec["path"], host, spec.get("headers"), body)

    async def drive(conn: Connection) -> None:
        nonlocal sent
        while time.monotonic() < stop_at and sent < limit:
            sent += 1
            started = time.perf_counter()
            status, _ = await conn.request(request())
            if measuring:
                statuses[status] += 1
                latencies.append(time.perf_counter() - started)

    conns = [await Connection.open(host, port) for _ in range(spec["connections"])]
    tasks = [asyncio.create_task(drive(c)) for c in conns]
    await asyncio.sleep(spec["warmup_s"])
    measuring, started = True, time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return {
        "elapsed_s": elapsed,
        "statuses": {str(k): v for k, v in statuses.items()},
        "per_s": {str(k): v / elapsed for k, v in statuses.items()},
        "latency": summary(latencies),
    }


async def chain(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], spec["port"]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    conn = await Connection.open(host, port)
    latencies, failures = [], Counter[str]()
    for n in range(spec["warmup"] + spec["count"]):
        body = json.dumps({"messages": [{"role": "user", "content": f"chain {n} {time.time()}"}]})
        started = time.perf_counter()
        status, answer = await conn.request(
            encode("POST", "/v1/jobs", host, headers, body.encode())
        )
        job = json.loads(answer)
        while status in (200, 202) and job["status"] not in ("succeeded", "failed", "cancelled"):
            path = f"/v1/jobs/{job['id']}?wait=10"
            status, answer = await conn.request(encode("GET", path, host, spec.get("headers")))
            job = json.loads(answer)
        elapsed = time.perf_counter() - started
        if status >= 300 or job.get("status") != "succeeded":
            failures[f"{status} {job.get('status')}"] += 1
        elif n >= spec["warmup"]:
            latencies.append(elapsed)
    conn.close()
    return {"latency": summary(latencies), "failures": dict(failures)}


def main() -> None:
    spec = json.loads(sys.argv[1])
    work = {"rate": rate, "chain": chain}[spec["mode"]]
    print(json.dumps(uvloop.run(work(spec))))


if __name__ == "__main__":
    main()
