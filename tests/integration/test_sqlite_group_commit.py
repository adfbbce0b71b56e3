"""SqliteJobStore's group commit: concurrent writes share transactions and fsyncs, a failing
write fails alone, and a durable write is answered only once an fsync covers it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.store import sqlite_writer
from shared.adapters.store.sqlite import SqliteJobStore
from shared.errors import StoreFull
from shared.job_writes import JobWrites
from shared.models import ChatRequest, Job, Message, utcnow

pytestmark = pytest.mark.integration


def job(n: int, **fields: object) -> Job:
    request = ChatRequest(messages=[Message(role="user", content=f"prompt {n}")])
    return Job.model_validate({"tenant": "t", "request": request, **fields})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(str(tmp_path / "db.sqlite"))
    await store.start()
    yield store
    await store.close()


def writer(store: SqliteJobStore) -> sqlite_writer.GroupCommitWriter:
    assert store._writer is not None
    return store._writer


async def test_concurrent_writes_share_transactions_and_fsyncs(store: SqliteJobStore) -> None:
    jobs = [job(n) for n in range(200)]
    await asyncio.gather(*(store.create_job(j) for j in jobs))
    assert all([await store.get_job(j.id) == j for j in jobs])
    assert writer(store).commits < len(jobs) / 4
    assert writer(store).syncs <= writer(store).commits


async def test_a_failing_write_fails_alone_in_its_group(store: SqliteJobStore) -> None:
    taken = await store.create_job(job(0))
    fresh = [job(n) for n in range(1, 20)]
    clash = job(99, id=taken.id)  # the same primary key: its INSERT fails
    results = await asyncio.gather(
        *(store.create_job(j) for j in [*fresh[:10], clash, *fresh[10:]]), return_exceptions=True
    )
    assert isinstance(results[10], sqlite3.IntegrityError)
    assert [r for r in results if isinstance(r, Exception)] == [results[10]]
    assert all([await store.get_job(j.id) == j for j in fresh])


async def test_a_write_that_fills_the_store_fails_alone_in_its_group(
    store: SqliteJobStore,
) -> None:
    """Most SQLITE_FULL errors roll back only the write's statement: the write is refused as
    StoreFull, the others of its group are kept, and the store goes on once there is room."""
    await writer(store).run(lambda db: db.execute("PRAGMA max_page_count = 1").fetchall())
    small = [job(n) for n in range(10)]
    turns = [Message(role="user", content="x" * 90_000) for _ in range(6)]
    huge = job(99, request=ChatRequest(messages=turns))
    sent = [*small[:5], huge, *small[5:]]
    results = await asyncio.gather(*(store.create_job(j) for j in sent), return_exceptions=True)
    assert isinstance(results[5], StoreFull)
    for job_sent, result in zip(sent, results, strict=True):
        assert isinstance(result, (Job, StoreFull)), result
        assert await store.get_job(job_sent.id) == (result if isinstance(result, Job) else None)
    await writer(store).run(lambda db: db.execute("PRAGMA max_page_count = 1000000").fetchall())
    assert await store.create_job(huge) == huge


async def test_an_error_that_ends_the_transaction_fails_its_whole_group(
    store: SqliteJobStore,
) -> None:
    """Some SQLITE_FULL errors make SQLite roll back the whole transaction (a one-row INSERT
    without a statement journal): then no write of the group was kept, and each is told so
    with that error (not with a confusing "no such savepoint" from the next step)."""
    await writer(store).run(lambda db: db.execute("CREATE TABLE scratch (x)").fetchall())
    await writer(store).run(lambda db: db.execute("PRAGMA max_page_count = 1").fetchall())

    def insert(blob_bytes: int) -> Callable[[sqlite3.Connection], sqlite3.Cursor]:
        return lambda db: db.execute("INSERT INTO scratch VALUES (zeroblob(?))", (blob_bytes,))

    results = await asyncio.gather(
        *(writer(store).run(insert(size)) for size in (10, 1_000_000, 10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    assert {sqlite_writer.is_full(r) for r in results if isinstance(r, sqlite3.Error)} == {True}
    kept = await writer(store).run(lambda db: db.execute("SELECT count(*) FROM scratch").fetchone())
    assert kept == (0,)


async def test_a_durable_write_is_answered_only_after_an_fsync_covers_it(
    store: SqliteJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()
    fsyncs: list[float] = []
    real_sync = sqlite_writer._datasync

    def slow_sync(fd: int) -> None:  # runs in the writer's sync thread
        released.wait(5)
        real_sync(fd)
        fsyncs.append(time.monotonic())

    monkeypatch.setattr(sqlite_writer, "_datasync", slow_sync)
    created = asyncio.create_task(store.create_job(job(1)))
    await asyncio.sleep(0.2)
    assert not created.done()  # committed, but not yet known to be on disk: not answered
    # the writer is not held up meanwhile: a claim (no fsync of its own) is answered at once
    now = utcnow()
    claim = JobWrites(store).claim("job_unknown", lease_until=now + timedelta(seconds=60), now=now)
    assert await asyncio.wait_for(claim, timeout=5) is None
    assert not created.done()
    released.set()
    stored = await asyncio.wait_for(created, timeout=5)
    answered = time.monotonic()
    assert fsyncs and fsyncs[0] <= answered
    assert await store.get_job(stored.id) == stored
