"""The operator console with 100,000 jobs in the store: `GET /v1/admin/jobs` (first page, filtered,
twenty pages deep) and the console's Jobs and Overview pages, timed against the same requests on a
store of 1,000 jobs. Paged, indexed reads should keep the two close (docs/PERFORMANCE.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from datetime import timedelta
from typing import Any

import httpx

from bench.report import Row
from bench.service import Run
from shared.adapters.store.sqlite import SqliteJobStore
from shared.adapters.store.sqlite_queries import insert_sql
from shared.adapters.store.sqlite_schema import JOB_COLUMNS, job_row
from shared.models import ChatRequest, Completion, Job, JobError, JobStatus, Message, utcnow

BIG, SMALL = 100_000, 1_000
TENANTS = ("acme", "globex", "initech", "umbrella")
ADMIN_KEY = "bench-admin-key"
REPEATS = 15
GOAL = 2.0  # the big store's median within twice the small one's


def seed(path: str, count: int) -> None:
    """`count` ended jobs of four tenants over the last three days, written with the store's own
    row codec (the schema made by the store itself)."""

    async def schema() -> None:
        store = SqliteJobStore(path)
        await store.start()
        await store.close()

    asyncio.run(schema())
    now = utcnow()
    request = ChatRequest(messages=[Message(role="user", content="summarise the quarter")])
    answer = Completion(content="done", provider="gemini", model="gemini-2.5-flash", latency_ms=420)

    def job(n: int) -> Job:
        created = now - timedelta(seconds=n * (3 * 86400 / count))
        failed = n % 17 == 0
        return Job(
            tenant=TENANTS[n % len(TENANTS)],
            request=request,
            status=JobStatus.failed if failed else JobStatus.succeeded,
            created_at=created,
            updated_at=created,
            completed_at=created + timedelta(seconds=1),
            attempts=1,
            result=None if failed else answer,
            error=JobError(code="llm_rejected", message="blocked") if failed else None,
        )

    db = sqlite3.connect(path)
    try:
        sql = insert_sql("jobs", JOB_COLUMNS)
        for start in range(0, count, 10_000):
            db.executemany(sql, [job_row(job(n)) for n in range(start, min(start + 10_000, count))])
            db.commit()
    finally:
        db.close()


def timed(http: httpx.Client, path: str, **params: Any) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        answer = http.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
    return statistics.median(times)


def deep_page_ms(http: httpx.Client, pages: int = 20) -> float:
    """The median time of each of the first `pages` pages, following the cursors."""
    times, cursor = [], None
    for _ in range(pages):
        started = time.perf_counter()
        answer = http.get(
            "/v1/admin/jobs", params={"limit": 50, **({"cursor": cursor} if cursor else {})}
        )
        times.append((time.perf_counter() - started) * 1000)
        cursor = answer.json()["next_cursor"]
    return statistics.median(times)


def measure(run: Run, count: int) -> dict[str, float]:
    db = run.fresh_db()
    seed(db, count)
    api = run.api(f"api-console-{count}", db=db, ADMIN_API_KEYS=ADMIN_KEY)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=api.url, headers=admin, timeout=120, trust_env=False) as http:
        http.get("/v1/admin/jobs")  # warm
        figures = {
            "admin jobs, first page": timed(http, "/v1/admin/jobs", limit=50),
            "admin jobs, status=failed": timed(http, "/v1/admin/jobs", status="failed", limit=50),
            "admin jobs, one tenant": timed(http, "/v1/admin/jobs", tenant="globex", limit=50),
            "admin jobs, 20 pages deep": deep_page_ms(http),
        }
    with httpx.Client(base_url=api.url, timeout=120, trust_env=False) as browser:
        signed_in = browser.post("/console/sign-in", data={"key": ADMIN_KEY})
        assert signed_in.status_code == 303, signed_in.text[:200]
        figures["console Jobs page"] = timed(browser, "/console/jobs")
        figures["console Overview page"] = timed(browser, "/console/overview")
    api.proc.stop()
    return figures


# The overview reads the last hour's jobs (at most 5,000): it grows with the hour's traffic,
# not with the store (3 days of jobs here: about 1,390 in the last hour of the big store, 14 of
# the small one), so its row is for information.
BY_TRAFFIC = frozenset({"console Overview page"})


def console_rows(run: Run) -> list[Row]:
    small, big = measure(run, SMALL), measure(run, BIG)
    return [
        Row(
            case=f"console: {what} ({BIG:,} jobs)",
            baseline=f"{small[what]:.1f} ms with {SMALL:,} jobs",
            project=f"{big[what]:.1f} ms",
            ratio=big[what] / small[what],
            goal=None if what in BY_TRAFFIC else GOAL,
            higher_is_better=False,
            details={
                "median_ms": {"small": small[what], "big": big[what]},
                "repeats": REPEATS,
                "last_hour_jobs": {"small": SMALL // 72, "big": BIG // 72},
            },
        )
        for what in big
    ]
