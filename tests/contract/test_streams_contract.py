"""One JobStreams contract, run against the in-process adapter and Redis Streams (the real
Valkey of the `redis_url` fixture)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.adapters.streams import local
from shared.adapters.streams.local import LocalJobStreams
from shared.adapters.streams.redis import PREFIX, RedisJobStreams
from shared.job_stream import StreamEvent
from shared.models import JobStatus
from shared.ports import JobStreams

RUNNING = StreamEvent.changed(JobStatus.running, 1)
SUCCEEDED = StreamEvent.changed(JobStatus.succeeded, 1)


def piece(index: int, text: str = "word ") -> StreamEvent:
    return StreamEvent.piece(1, "gemini", index, text)


async def read_all(
    streams: JobStreams, job_id: str, count: int, after: str = "0"
) -> list[tuple[str, StreamEvent]]:
    """The next `count` events after `after` (appends may go out in the background)."""
    read: list[tuple[str, StreamEvent]] = []
    async with asyncio.timeout(5):
        while len(read) < count:
            read += await streams.read(job_id, read[-1][0] if read else after, wait_s=1)
    return read


async def last_seen(streams: JobStreams, job_id: str, event: StreamEvent) -> None:
    """Once `event` can be read (everything published before it has gone out)."""
    async with asyncio.timeout(5):
        after = "0"
        while True:
            read = await streams.read(job_id, after, wait_s=1)
            if event in [e for _, e in read]:
                return
            after = read[-1][0] if read else after


class JobStreamsContract:
    @pytest.fixture
    async def streams(self) -> AsyncIterator[JobStreams]:
        raise NotImplementedError
        yield

    async def test_events_come_back_in_order_with_increasing_ids(self, streams: JobStreams) -> None:
        sent = [RUNNING, piece(0, "hello "), piece(1, "there"), SUCCEEDED]
        for event in sent:
            await streams.publish("job_a", event)
        read = await read_all(streams, "job_a", 4)
        assert [event for _, event in read] == sent
        ids = [event_id for event_id, _ in read]
        assert len(set(ids)) == 4 and ids == sorted(ids, key=id_order)

    async def test_reading_after_an_id_resumes_just_after_it(self, streams: JobStreams) -> None:
        for n in range(5):
            await streams.publish("job_a", piece(n, str(n)))
        first = await read_all(streams, "job_a", 5)
        rest = await streams.read("job_a", first[1][0], wait_s=0)
        assert [event.text for _, event in rest] == ["2", "3", "4"]
        assert await streams.read("job_a", first[-1][0], wait_s=0) == []

    async def test_jobs_have_streams_of_their_own(self, streams: JobStreams) -> None:
        await streams.publish("job_a", piece(0, "a"))
        await streams.publish("job_b", piece(0, "b"))
        await last_seen(streams, "job_b", piece(0, "b"))
        (only_b,) = await streams.read("job_b", "0", wait_s=0)
        assert only_b[1].text == "b"
        assert await streams.read("job_c", "0", wait_s=0) == []

    async def test_a_read_waits_for_the_next_event(self, streams: JobStreams) -> None:
        await streams.publish("job_a", RUNNING)
        ((seen, _),) = await read_all(streams, "job_a", 1)

        async def later() -> None:
            await asyncio.sleep(0.2)
            await streams.publish("job_a", piece(0, "late"))

        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            group.create_task(later())
            read = await streams.read("job_a", seen, wait_s=3)
        assert [event.text for _, event in read] == ["late"]
        assert 0.15 < time.monotonic() - started < 2

    async def test_a_read_with_nothing_new_returns_empty_after_the_wait(
        self, streams: JobStreams
    ) -> None:
        started = time.monotonic()
        assert await streams.read("job_quiet", "0", wait_s=0.3) == []
        assert 0.25 < time.monotonic() - started < 2

    async def test_text_survives_as_it_was_sent(self, streams: JobStreams) -> None:
        odd = piece(0, ' ünïcode, new\nlines, "quotes" and trailing spaces  ')
        await streams.publish("job_a", odd)
        ((_, event),) = await read_all(streams, "job_a", 1)
        assert event == odd


def id_order(event_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in event_id.split("-"))


class TestLocalJobStreams(JobStreamsContract):
    @pytest.fixture
    async def streams(self) -> AsyncIterator[JobStreams]:
        streams = LocalJobStreams()
        yield streams
        await streams.close()

    async def test_a_stream_is_bounded(self) -> None:
        streams = LocalJobStreams(max_events=3)
        for n in range(5):
            await streams.publish("job_a", piece(n, str(n)))
        read = await streams.read("job_a", "0", wait_s=0)
        assert [event.text for _, event in read] == ["2", "3", "4"]

    async def test_an_ended_stream_is_forgotten_after_a_while(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(local, "SWEEP_EVERY_S", 0.0)
        streams = LocalJobStreams(keep_s=60, ended_keep_s=0.05)
        await streams.publish("job_a", RUNNING)
        await streams.publish("job_a", SUCCEEDED)
        await streams.publish("job_b", RUNNING)
        await asyncio.sleep(0.1)
        await streams.publish("job_c", RUNNING)  # a write sweeps what has expired
        assert await streams.read("job_a", "0", wait_s=0) == []
        assert streams.kept == 2

    async def test_at_most_max_jobs_streams_are_held(self) -> None:
        streams = LocalJobStreams(max_jobs=2)
        for job in ("job_a", "job_b", "job_c"):
            await streams.publish(job, RUNNING)
        assert streams.kept == 2
        assert await streams.read("job_a", "0", wait_s=0) == []


class TestRedisJobStreams(JobStreamsContract):
    @pytest.fixture
    async def streams(self, redis_url: str, redis_db: Any) -> AsyncIterator[JobStreams]:
        streams = RedisJobStreams(redis_url)
        yield streams
        await streams.close()

    async def test_the_key_is_trimmed_and_expires(self, redis_url: str, redis_db: Any) -> None:
        streams = RedisJobStreams(redis_url, max_events=10, keep_s=600, ended_keep_s=30)
        try:
            for n in range(500):
                await streams.publish("job_a", piece(n))
            await last_seen(streams, "job_a", piece(499))
            assert await redis_db.xlen(PREFIX + "job_a") < 500  # MAXLEN ~: about 10 kept
            assert 30 < await redis_db.ttl(PREFIX + "job_a") <= 600
            await streams.publish("job_a", SUCCEEDED)
            await last_seen(streams, "job_a", SUCCEEDED)
            assert 0 < await redis_db.ttl(PREFIX + "job_a") <= 30
        finally:
            await streams.close()

    async def test_an_unreachable_redis_neither_raises_nor_hangs(self) -> None:
        streams = RedisJobStreams("redis://127.0.0.1:1/0", timeout_s=0.2)
        try:
            async with asyncio.timeout(3):
                for n in range(20):  # queued at once; sent (and lost) in the background
                    await streams.publish("job_a", piece(n))
                assert await streams.read("job_a", "0", wait_s=0.1) == []
                await asyncio.sleep(0.3)  # the failed send has ended
                await streams.publish("job_a", piece(20))  # dropped: quiet for a while
                assert await streams.read("job_a", "0", wait_s=0.1) == []
        finally:
            await streams.close()
