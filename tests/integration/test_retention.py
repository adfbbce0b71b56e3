"""JOB_RETENTION_DAYS wired end to end on SQLite: an embedded service (which has no worker sweep)
purges what has expired in the background from its start, and keeps the rest and the usage."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.store.sqlite import SqliteJobStore
from shared.factory import ServiceFactory
from shared.models import ChatRequest, Completion, Job, JobStatus, Message, utcnow
from tests.conftest import make_settings
from tests.fakes import FakeLLM

pytestmark = pytest.mark.integration


def ended_job(days_ago: float) -> Job:
    ended = utcnow() - timedelta(days=days_ago)
    return Job(
        tenant="t1",
        request=ChatRequest(messages=[Message(role="user", content="hi")]),
        status=JobStatus.succeeded,
        result=Completion(content="ih", provider="p", model="m", latency_ms=1),
        created_at=ended,
        updated_at=ended,
        completed_at=ended,
    )


async def test_embedded_mode_purges_expired_jobs_from_its_start(tmp_path: Path) -> None:
    path = str(tmp_path / "chatjobs.db")
    earlier = SqliteJobStore(path)  # stored by a version that kept everything
    await earlier.start()
    old, young = [await earlier.create_job(ended_job(days)) for days in (8, 6)]
    days = (utcnow().date() - timedelta(days=9), utcnow().date())
    usage = await earlier.usage("t1", *days)
    await earlier.close()

    settings = make_settings(sqlite_path=path, job_retention_days=7)
    services = await ServiceFactory(settings, llm=FakeLLM()).start(consume=True)
    try:
        deadline = time.monotonic() + 10
        while await services.store.get_job(old.id) is not None:
            assert time.monotonic() < deadline, "the expired job was not purged"
            await asyncio.sleep(0.05)
        assert await services.store.get_job(young.id) == young
        assert await services.store.usage("t1", *days) == usage != []
    finally:
        await services.close()


async def test_the_purge_drops_coalescing_rows_whose_job_is_gone(tmp_path: Path) -> None:
    """A crash between a leader's end and its release leaves its key and follower rows; once
    the job is purged (or never stored), the purge takes them too, and a live holder stays."""
    store = SqliteJobStore(str(tmp_path / "chatjobs.db"), retention=timedelta(days=7))
    await store.start()
    try:
        live = await store.create_job(ended_job(0).model_copy(update={"status": JobStatus.running}))
        expired = await store.create_job(ended_job(8))
        assert await store.take_key("t1", "live-key", live.id, replacing=None)
        assert await store.take_key("t1", "old-key", expired.id, replacing=None)
        assert await store.take_key("t1", "never-key", "job_never_stored", replacing=None)
        await store.add_follower(expired.id, "job_follower")
        await store.add_follower(live.id, "job_live_follower")

        while await store.purge_expired(limit=1) == 1:
            pass

        assert await store.get_job(expired.id) is None
        assert await store.key_holder("t1", "old-key") is None
        assert await store.key_holder("t1", "never-key") is None
        assert await store.followers(expired.id) == []
        assert await store.key_holder("t1", "live-key") == live.id
        assert await store.followers(live.id) == ["job_live_follower"]
    finally:
        await store.close()
