"""The JobQueue contract, run against the fake and every adapter.

Each adapter comes with a harness: it owns the queue, records each delivery with its time, and
`deliver(expected)` runs consumers until every expected delivery has arrived, counting repeats
(the fake drains; the arq harness takes the batch jobs as a worker's batch runner does and runs a
real burst arq Worker against the test Redis for the rest).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection
from typing import Any

import pytest
from arq import Worker
from arq.connections import RedisSettings
from arq.worker import func

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.queue import arq_lanes
from shared.adapters.queue.arq import (
    DELAYED_KEY,
    FUNCTION,
    QUEUE_NAME,
    WAITING_KEY,
    ArqJobQueue,
)
from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.adapters.queue.sqs import SqsJobQueue
from shared.errors import QueueUnavailable
from shared.lanes import DEFAULT_LANE, Lane, delivering
from shared.ports import JobQueue, JobRef
from tests.fakes import FakeJobQueue

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
DELAY_S = 0.5


class Harness:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.deliveries: list[tuple[str, float]] = []
        self.delivered = asyncio.Condition()

    @property
    def seen(self) -> list[str]:
        return [job_id for job_id, _ in self.deliveries]

    async def record(self, job_id: str) -> None:
        async with self.delivered:
            self.deliveries.append((job_id, time.monotonic()))
            self.delivered.notify_all()

    async def deliver(self, expected: Collection[str]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.queue.close()


class FakeHarness(Harness):
    queue: FakeJobQueue

    async def deliver(self, expected: Collection[str]) -> None:
        await self.queue.start(self.record)
        await self.queue.drain()


class InProcessHarness(Harness):
    async def deliver(self, expected: Collection[str]) -> None:
        await self.queue.start(self.record)  # idempotent: workers start once
        async with asyncio.timeout(10), self.delivered:
            await self.delivered.wait_for(lambda: not Counter(expected) - Counter(self.seen))


class ArqHarness(Harness):
    queue: ArqJobQueue

    def __init__(self, queue: ArqJobQueue, redis_url: str) -> None:
        super().__init__(queue)
        self.redis_url = redis_url

    async def deliver(self, expected: Collection[str], max_jobs: int = 10) -> None:
        """As a worker does, until every expected delivery came: delayed jobs that are due back
        in their lanes, batch jobs as its batch runner takes them, the rest by a burst arq
        Worker."""

        async def run_job(ctx: dict[str, Any], job_id: str, *lane: str) -> None:
            await self.record(job_id)

        async with asyncio.timeout(10):
            while Counter(expected) - Counter(self.seen):
                await self.queue.release_due()
                for job in await self.queue.take_batch_jobs(100_000):
                    await self.record(job.id)
                worker = Worker(
                    functions=[func(run_job, name=FUNCTION)],
                    redis_settings=RedisSettings.from_dsn(self.redis_url),
                    burst=True,
                    poll_delay=0,
                    handle_signals=False,
                    keep_result=0,
                    max_jobs=max_jobs,
                )
                try:
                    await worker.async_run()
                finally:
                    await worker.close()
                await asyncio.sleep(0.01)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class JobQueueContract:
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        raise NotImplementedError
        yield

    @pytest.fixture
    async def unavailable(self) -> AsyncIterator[JobQueue]:
        """A queue that cannot take jobs."""
        raise NotImplementedError
        yield

    async def test_everything_enqueued_is_delivered(self, harness: Harness) -> None:
        for job_id in ("job_a", "job_b", "job_c"):
            await harness.queue.enqueue(job_id)
        await harness.deliver({"job_a", "job_b", "job_c"})
        assert set(harness.seen) == {"job_a", "job_b", "job_c"}

    async def test_enqueue_many_delivers_all(self, harness: Harness) -> None:
        batch = [f"job_{n}" for n in range(50)]
        await harness.queue.enqueue_many(batch, group="batch_1")
        await harness.queue.enqueue_many(["job_x", "job_y"])
        await harness.deliver({*batch, "job_x", "job_y"})
        assert set(harness.seen) == {*batch, "job_x", "job_y"}

    async def test_enqueue_many_of_nothing_is_fine(self, harness: Harness) -> None:
        await harness.queue.enqueue_many([], group="empty")
        await harness.queue.enqueue_many([])
        await harness.queue.enqueue("job_after")
        await harness.deliver({"job_after"})
        assert harness.seen == ["job_after"]  # nothing phantom came out of the empty calls

    async def test_a_finished_job_can_be_enqueued_again(self, harness: Harness) -> None:
        await harness.queue.enqueue("job_a")
        await harness.deliver({"job_a"})
        await harness.queue.enqueue("job_a")
        await harness.deliver(["job_a", "job_a"])
        assert harness.seen == ["job_a", "job_a"]

    async def test_delay_defers_delivery(self, harness: Harness) -> None:
        start = time.monotonic()
        await harness.queue.enqueue("job_later", delay_s=DELAY_S)
        await harness.queue.enqueue("job_now")
        await harness.deliver({"job_later", "job_now"})
        at = dict(harness.deliveries)
        assert at["job_now"] - start < DELAY_S
        assert at["job_later"] - start >= DELAY_S - 0.01  # arq keeps whole milliseconds

    async def test_unreachable_queue_refuses_jobs(self, unavailable: JobQueue) -> None:
        with pytest.raises(QueueUnavailable):
            await unavailable.enqueue("job_a")
        with pytest.raises(QueueUnavailable):
            await unavailable.enqueue_many(["job_b", "job_c"], group="batch_1")
        assert await unavailable.ping() is False


class TestFakeJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        harness = FakeHarness(FakeJobQueue())
        yield harness
        await harness.close()

    @pytest.fixture
    async def unavailable(self) -> AsyncIterator[JobQueue]:
        queue = FakeJobQueue()
        queue.refuse = True
        yield queue

    async def test_delay_defers_delivery(self, harness: Harness) -> None:
        """The fake only records the delay; `drain()` delivers at once."""
        await harness.queue.enqueue("job_later", delay_s=DELAY_S)
        assert isinstance(harness.queue, FakeJobQueue)
        assert harness.queue.delays["job_later"] == DELAY_S


class TestInProcessJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        harness = InProcessHarness(InProcessJobQueue(concurrency=4))
        yield harness
        await harness.close()

    @pytest.fixture
    async def unavailable(self) -> AsyncIterator[JobQueue]:
        queue = InProcessJobQueue(concurrency=1)
        await queue.start()
        await queue.close()
        yield queue

    async def test_singles_go_first_then_groups_take_turns(self) -> None:
        harness = InProcessHarness(InProcessJobQueue(concurrency=1))
        await harness.queue.enqueue_many(["a1", "a2", "a3"], group="A")
        await harness.queue.enqueue_many(["b1"], group="B")
        await harness.queue.enqueue("single")
        await harness.deliver({"a1", "a2", "a3", "b1", "single"})
        await harness.close()
        assert harness.seen == ["single", "a1", "b1", "a2", "a3"]

    async def test_a_failing_handler_does_not_stop_its_worker(self) -> None:
        seen: list[str] = []
        fine = asyncio.Event()

        async def handler(job_id: str) -> None:
            seen.append(job_id)
            if job_id == "boom":
                raise RuntimeError("handler bug")
            fine.set()

        queue = InProcessJobQueue(concurrency=1)
        await queue.start(handler)
        await queue.enqueue("boom")
        await queue.enqueue("fine")
        await asyncio.wait_for(fine.wait(), 5)
        await queue.close()
        assert seen == ["boom", "fine"]

    async def test_close_lets_running_jobs_finish(self) -> None:
        started, finished = asyncio.Event(), []

        async def handler(job_id: str) -> None:
            started.set()
            await asyncio.sleep(0.2)
            finished.append(job_id)

        queue = InProcessJobQueue(concurrency=2)
        await queue.start(handler)
        await queue.enqueue("slow")
        await queue.enqueue("later", delay_s=60)
        await started.wait()
        await queue.close()
        assert finished == ["slow"]
        assert await queue.ping() is False

    async def test_close_gives_up_on_a_job_after_the_drain_timeout(self) -> None:
        started = asyncio.Event()

        async def handler(job_id: str) -> None:
            started.set()
            await asyncio.sleep(60)

        queue = InProcessJobQueue(concurrency=2, drain_timeout_s=0.1)
        await queue.start(handler)
        await queue.enqueue("stuck")
        await started.wait()
        begun = time.monotonic()
        await queue.close()
        assert time.monotonic() - begun < 2

    async def test_ping_is_true_only_while_running(self) -> None:
        queue = InProcessJobQueue(concurrency=1)
        assert await queue.ping() is False
        await queue.start()
        assert await queue.ping() is True
        await queue.close()
        assert await queue.ping() is False


@pytest.mark.integration
class TestArqJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(self, redis_url: str, redis_db: Any) -> AsyncIterator[Harness]:
        queue = ArqJobQueue(redis_url)
        await queue.start()
        harness = ArqHarness(queue, redis_url)
        yield harness
        await harness.close()

    @pytest.fixture
    async def unavailable(self) -> AsyncIterator[JobQueue]:
        queue = ArqJobQueue(closed_port_url(), timeout_s=2)
        await queue.start()  # logs a warning, does not raise: the API still starts
        yield queue
        await queue.close()

    async def test_enqueue_many_is_one_transaction_outside_arqs_queue(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        await redis_db.config_resetstat()
        await harness.queue.enqueue_many([f"job_{n}" for n in range(100)], group="batch_1")
        stats = await redis_db.info("commandstats")
        assert stats["cmdstat_multi"]["calls"] == 1
        assert "cmdstat_watch" not in stats
        pool = await harness.queue.connected()
        assert await pool.queued_jobs(queue_name=QUEUE_NAME) == []  # arq holds none of them
        taken = await harness.queue.take_batch_jobs(1000)
        assert [(job.id, job.group, job.lane) for job in taken] == [
            (f"job_{n}", "batch_1", DEFAULT_LANE) for n in range(100)
        ]
        keys = (arq_lanes.tenants_key("normal"), arq_lanes.groups_key(DEFAULT_LANE))
        assert await redis_db.exists(*keys, WAITING_KEY) == 0

    async def test_a_single_job_is_an_arq_job_and_a_delayed_one_waits_outside_arq(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        await harness.queue.enqueue("job_a")
        await harness.queue.enqueue("job_b", delay_s=60)
        pool = await harness.queue.connected()
        queued = await pool.queued_jobs(queue_name=QUEUE_NAME)
        assert [(j.function, j.args) for j in queued] == [(FUNCTION, ("job_a", "normal", ""))]
        assert await redis_db.zcard(DELAYED_KEY) == 1
        assert await redis_db.smembers(WAITING_KEY) == {b"job_b"}

    async def test_an_immediate_enqueue_of_a_waiting_job_is_a_no_op(
        self, harness: ArqHarness
    ) -> None:
        await harness.queue.enqueue("job_a")
        await harness.queue.enqueue("job_a")
        await harness.deliver({"job_a"})
        assert harness.seen == ["job_a"]

    async def test_a_delayed_enqueue_of_a_waiting_job_is_kept(self, harness: ArqHarness) -> None:
        await harness.queue.enqueue("job_a")
        await harness.queue.enqueue("job_a", delay_s=0.1)
        await harness.deliver(["job_a", "job_a"])
        assert harness.seen == ["job_a", "job_a"]

    async def test_batch_jobs_are_taken_one_group_at_a_time_in_turn(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        await harness.queue.enqueue_many(["a1", "a2", "a3"], group="A")
        await harness.queue.enqueue_many(["b1"], group="B")
        await harness.queue.enqueue("single")
        assert await redis_db.zrange(QUEUE_NAME, 0, -1) == [b"single"]  # no batch job in arq

        taken = await harness.queue.take_batch_jobs(3)
        assert [(job.id, job.group) for job in taken] == [("a1", "A"), ("b1", "B"), ("a2", "A")]
        groups = arq_lanes.groups_key(DEFAULT_LANE)
        assert await redis_db.lrange(arq_lanes.jobs_key(DEFAULT_LANE, "A"), 0, -1) == [b"a3"]
        assert await redis_db.zrange(groups, 0, -1) == [b"A"]  # B is done
        assert await redis_db.smembers(WAITING_KEY) == {b"a3"}

        assert [job.id for job in await harness.queue.take_batch_jobs(10)] == ["a3"]
        tenants = arq_lanes.tenants_key("normal")
        assert await redis_db.exists(tenants, groups, WAITING_KEY) == 0
        assert await harness.queue.take_batch_jobs(10) == []

    async def test_higher_priorities_first_then_tenants_then_their_batches_in_turn(
        self, harness: ArqHarness
    ) -> None:
        queue = harness.queue
        await queue.enqueue_many(["low1", "low2"], group="L", lane=Lane("low", "A"))
        await queue.enqueue_many(["a1", "a2", "a3"], group="A1", lane=Lane("normal", "A"))
        await queue.enqueue_many(["x1", "x2"], group="A2", lane=Lane("normal", "A"))
        await queue.enqueue_many(["b1", "b2", "b3"], group="B1", lane=Lane("normal", "B"))
        await queue.enqueue_many(["h1"], group="H", lane=Lane("high", "C"))
        taken = await queue.take_batch_jobs(20)
        assert [job.id for job in taken] == [
            "h1",
            *("a1", "b1", "x1", "b2", "a2", "b3", "x2", "a3"),  # A and B in turn; A's batches too
            *("low1", "low2"),
        ]
        assert taken[0].lane == Lane("high", "C") and taken[-1].lane == Lane("low", "A")

    async def test_single_jobs_are_scored_by_priority(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        await harness.queue.enqueue("low", lane=Lane("low", "A"))
        await harness.queue.enqueue("normal", lane=Lane("normal", "A"))
        await harness.queue.enqueue("high", lane=Lane("high", "B"))
        await harness.queue.enqueue("normal2")
        assert await redis_db.zrange(QUEUE_NAME, 0, -1) == [b"high", b"normal", b"normal2", b"low"]
        await harness.deliver({"low", "normal", "high", "normal2"}, max_jobs=1)
        assert harness.seen == ["high", "normal", "normal2", "low"]

    async def test_a_due_retry_comes_back_at_its_priority(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        for n in range(3):
            await harness.queue.enqueue(f"low{n}", lane=Lane("low", "A"))
        await harness.queue.enqueue("retried", delay_s=0.05, lane=Lane("high", "B"))
        with delivering(Lane("normal", "C")):  # a consumer's retry names no lane: it keeps its own
            await harness.queue.enqueue("again", delay_s=0.05)
        assert await redis_db.smembers(WAITING_KEY) == {b"retried", b"again"}  # held: not lost
        assert await harness.queue.release_due() == 0  # not due yet
        await asyncio.sleep(0.1)
        assert await harness.queue.release_due() == 2
        queued = await (await harness.queue.connected()).queued_jobs(queue_name=QUEUE_NAME)
        by_score = [j.args for j in sorted(queued, key=lambda j: j.score or 0)]
        assert by_score == [
            ("retried", "high", "B"),
            ("again", "normal", "C"),
            *((f"low{n}", "low", "A") for n in range(3)),
        ]
        assert await redis_db.zcard(DELAYED_KEY) == 0
        assert await redis_db.smembers(WAITING_KEY) == set()

    async def test_groups_queued_before_priorities_are_still_taken(
        self, harness: ArqHarness, redis_db: Any
    ) -> None:
        await redis_db.rpush(arq_lanes.LEGACY_GROUP_PREFIX + "old", "o1", "o2")
        await redis_db.sadd(WAITING_KEY, "o1", "o2")
        await redis_db.zadd(arq_lanes.LEGACY_GROUPS_KEY, {"old": 0})
        await harness.queue.enqueue_many(["n1"], group="new", lane=Lane("normal", "A"))
        await harness.queue.enqueue_many(["l1"], group="low", lane=Lane("low", "A"))
        assert await harness.queue.pending()
        taken = await harness.queue.take_batch_jobs(10)
        assert [(job.id, job.group, job.lane) for job in taken] == [
            ("n1", "new", Lane("normal", "A")),
            ("o1", "old", DEFAULT_LANE),
            ("o2", "old", DEFAULT_LANE),
            ("l1", "low", Lane("low", "A")),
        ]
        assert await redis_db.exists(arq_lanes.LEGACY_GROUPS_KEY, WAITING_KEY) == 0

    async def test_a_new_group_gets_the_next_turn(self, harness: ArqHarness) -> None:
        await harness.queue.enqueue_many([f"a{n}" for n in range(10)], group="A")
        await harness.queue.take_batch_jobs(5)
        await harness.queue.enqueue_many(["b1", "b2"], group="B")
        taken = await harness.queue.take_batch_jobs(2)
        assert [job.id for job in taken] == ["b1", "a5"]

    async def test_batch_jobs_are_never_taken_twice(self, harness: ArqHarness) -> None:
        await harness.queue.enqueue_many([f"j{n}" for n in range(20)], group="A")
        takes = await asyncio.gather(*(harness.queue.take_batch_jobs(3) for _ in range(10)))
        taken = [job.id for take in takes for job in take]
        assert len(taken) == len(set(taken)) == 20

    async def test_lost_names_the_jobs_held_nowhere(self, harness: ArqHarness) -> None:
        await harness.queue.enqueue("single")
        await harness.queue.enqueue("later", delay_s=60)
        await harness.queue.enqueue_many(["taken", "waiting"], group="A")
        await harness.queue.take_batch_jobs(1)  # "taken" left its group: a worker runs it
        names = ("single", "later", "taken", "waiting", "unknown")
        lost = await harness.queue.lost([JobRef(name, None) for name in names])
        # "later" waits in the delayed set; "taken" is out of Redis's hands
        assert [ref.id for ref in lost] == ["taken", "unknown"]

    async def test_start_survives_an_unreachable_redis(self) -> None:
        queue = ArqJobQueue(closed_port_url(), timeout_s=2)
        await queue.start()
        assert await queue.ping() is False
        await queue.close()

    async def test_connects_later_when_redis_comes_up(self, redis_url: str, redis_db: Any) -> None:
        queue = ArqJobQueue(redis_url)  # never started: the first enqueue connects
        await queue.enqueue("job_a")
        assert await redis_db.zrange(QUEUE_NAME, 0, -1) == [b"job_a"]
        assert await queue.ping() is True
        await queue.close()


class SqsHarness(Harness):
    """Long-polls both queues at once, recording and acking each message as it arrives."""

    queue: SqsJobQueue

    async def deliver(self, expected: Collection[str]) -> None:
        def done() -> bool:
            return not Counter(expected) - Counter(self.seen)

        async def consume(url: str) -> None:
            while not done():  # each poll ends by itself (1 s), so none is left in flight
                for message in await self.queue.receive(url, wait_s=1):
                    await self.record(message.job_id)
                    await self.queue.ack(message)

        async with asyncio.timeout(15), asyncio.TaskGroup() as consumers:
            for url in self.queue.queue_urls:
                consumers.create_task(consume(url))


@pytest.mark.integration
class TestSqsJobQueue(JobQueueContract):
    @pytest.fixture
    async def harness(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> AsyncIterator[Harness]:
        queue = SqsJobQueue(aws_clients, aws_layout.queue_url, aws_layout.batch_queue_url)
        await queue.start()
        harness = SqsHarness(queue)
        yield harness
        await harness.close()

    @pytest.fixture
    async def unavailable(self, moto_endpoint: str) -> AsyncIterator[JobQueue]:
        """Nothing listens at the endpoint (moto_endpoint only provides fake credentials)."""
        endpoint = closed_port_url().replace("redis://", "http://").removesuffix("/0")
        clients = AwsClients(endpoint_url=endpoint, region="us-east-1")
        yield SqsJobQueue(clients, f"{endpoint}/123456789012/nowhere", timeout_s=1)
        await clients.close()

    async def test_sub_second_delays_round_up_to_whole_seconds(self, harness: Harness) -> None:
        start = time.monotonic()
        await harness.queue.enqueue("job_later", delay_s=0.2)
        await harness.deliver({"job_later"})
        assert harness.deliveries[0][1] - start >= 0.99  # SQS takes DelaySeconds in seconds
