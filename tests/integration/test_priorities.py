"""Priorities and tenant turns through each queue's real consumer (docs/adr/0015): the in-process
workers, an arq worker process's Supervisor on the test Valkey, and the SQS poller on moto.

One scenario, queued in full before any worker starts, in the worst order for it: tenant A's big
`low` batch first, then A's `normal` batch, then the others' work, `high` last. Workers run one
job at a time, and the fake LLM records the order it was asked in; each prompt names its tenant,
priority and kind. Assertions are on that order, never on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from shared import admission
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.config import Settings
from shared.execution import requeueing_consumer
from shared.factory import ServiceFactory, Services
from shared.keys import Caller, Priority
from shared.lanes import RANK
from shared.models import BatchItem, JobCreate, JobStatus, Message
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.sqs_consumer import SqsConsumer
from worker.sqs_poller import PriorityPoller
from worker.supervisor import Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]

A_LOW = 150  # tenant A's big low-priority batch
NORMAL_BATCH = 20  # each tenant's normal batch (A's has twice as many)
SINGLES = 4


class Work(NamedTuple):
    tenant: str
    priority: Priority
    kind: str  # "single" or "batch"

    @classmethod
    def of(cls, prompt: str) -> Work:
        tenant, priority, kind, _ = prompt.split("-")
        return cls(tenant, priority, kind)  # type: ignore[arg-type]


def prompt(work: Work, n: int) -> list[Message]:
    return [Message(role="user", content=f"{work.tenant}-{work.priority}-{work.kind}-{n}")]


async def queue_scenario(services: Services) -> int:
    """Everything queued, big low-priority work first; returns how many jobs."""
    plan = [
        (Work("A", "low", "batch"), A_LOW),
        (Work("A", "normal", "batch"), 2 * NORMAL_BATCH),
        (Work("B", "low", "single"), SINGLES),
        (Work("C", "normal", "single"), SINGLES),
        (Work("B", "normal", "batch"), NORMAL_BATCH),
        (Work("C", "normal", "batch"), NORMAL_BATCH),
        (Work("C", "high", "batch"), NORMAL_BATCH // 2),
        (Work("B", "high", "single"), SINGLES),
    ]
    for work, count in plan:
        caller = Caller(work.tenant, priority=work.priority)  # the key's default priority
        if work.kind == "single":
            for n in range(count):
                body = JobCreate(messages=prompt(work, n))
                await services.chat.submit(work.tenant, body, caller=caller)
        else:
            items = [BatchItem(custom_id=f"c{n}", messages=prompt(work, n)) for n in range(count)]
            await services.batches.create(work.tenant, items, caller=caller)
    return sum(count for _, count in plan)


def taken(llm: FakeLLM) -> list[Work]:
    return [Work.of(r.messages[-1].content) for r in llm.requests]


def ranks(order: Sequence[Work]) -> list[int]:
    return [RANK[w.priority] for w in order]


def assert_priorities_first(order: Sequence[Work], *, across_kinds: bool) -> None:
    """High before normal before low: among singles and among batch jobs, and (where the queue
    promises it) across both, with singles first within a priority."""
    for kind in ("single", "batch"):
        of_kind = [w for w in order if w.kind == kind]
        assert ranks(of_kind) == sorted(ranks(of_kind)), [w.priority for w in of_kind]
    if across_kinds:
        keys = [(RANK[w.priority], w.kind != "single") for w in order]
        assert keys == sorted(keys), order


def assert_tenants_take_turns(order: Sequence[Work]) -> None:
    """A's normal batch (40 jobs, queued first) and B's and C's (20 each) take turns: B and C
    are done within the first 3 x 20 normal batch jobs, not after A's 40."""
    normal = [w.tenant for w in order if w.priority == "normal" and w.kind == "batch"]
    assert len(normal) == 4 * NORMAL_BATCH
    last_b_or_c = max(n for n, tenant in enumerate(normal) if tenant != "A")
    assert last_b_or_c < 3 * NORMAL_BATCH + 2, normal
    assert normal[: 3 * NORMAL_BATCH].count("A") >= NORMAL_BATCH - 2  # A was not left out


async def wait_all_ended(services: Services, llm: FakeLLM, total: int) -> None:
    """Until the LLM was asked `total` times and no job is queued or running (bounded)."""
    none_left = dict.fromkeys((JobStatus.queued, JobStatus.running), 0)
    for _ in range(3_000):  # 150 s at most
        if len(llm.requests) >= total and await services.store.count_unfinished() == none_left:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(llm.requests)} of {total} jobs ran")


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


async def test_in_process_takes_priorities_then_singles_then_tenants_in_turn(
    tmp_path: Path, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the whole scenario waits for one worker slot: past embedded mode's backpressure
    monkeypatch.setattr(admission, "LOCAL_BACKLOG_PER_SLOT", 1_000)
    settings = make_settings(
        sqlite_path=str(tmp_path / "db.sqlite"), cache_backend="none", worker_concurrency=1
    )
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    try:
        total = await queue_scenario(services)
        await services.queue.start(requeueing_consumer(services.executor, services.queue))
        await wait_all_ended(services, llm, total)
    finally:
        await services.close()
    order = taken(llm)
    assert_priorities_first(order, across_kinds=True)
    assert_tenants_take_turns(order)
    assert order[:SINGLES] == [Work("B", "high", "single")] * SINGLES


async def test_arq_worker_takes_priorities_first_and_tenants_in_turn(
    redis_url: str, redis_db: Any, tmp_path: Path, llm: FakeLLM
) -> None:
    settings = make_settings(
        queue_backend="arq",
        cache_backend="none",
        redis_url=redis_url,
        sqlite_path=str(tmp_path / "db.sqlite"),
        worker_concurrency=1,
    )
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    try:
        total = await queue_scenario(services)
        await Supervisor(settings, burst=True, services=services).run()
        await wait_all_ended(services, llm, total)
    finally:
        await services.close()
    order = taken(llm)
    # single jobs are arq jobs and never wait for a batch job's turn (docs/adr/0009)
    assert_priorities_first(order, across_kinds=False)
    assert_tenants_take_turns(order)
    assert [w for w in order if w.kind == "single"][:SINGLES] == [Work("B", "high", "single")] * 4
    high_batch = [n for n, w in enumerate(order) if w == Work("C", "high", "batch")]
    assert max(high_batch) < NORMAL_BATCH // 2 + 3 * SINGLES + 2  # before any other batch job


@pytest.fixture
def sqs_settings(aws_layout: AwsLayout, moto_endpoint: str, tmp_path: Path) -> Settings:
    return make_settings(
        queue_backend="sqs",
        cache_backend="none",
        sqlite_path=str(tmp_path / "db.sqlite"),
        sqs_queue_url=aws_layout.queue_url,
        sqs_batch_queue_url=aws_layout.batch_queue_url,
        sqs_high_queue_url=aws_layout.high_queue_url,
        sqs_low_queue_url=aws_layout.low_queue_url,
        aws_endpoint_url=moto_endpoint,
        worker_concurrency=1,
    )


@pytest.fixture
async def sqs_services(sqs_settings: Settings, llm: FakeLLM) -> AsyncIterator[Services]:
    services = await ServiceFactory(sqs_settings, llm=llm).start(consume=False)
    yield services
    await services.close()


async def test_sqs_poller_takes_the_priority_queues_in_order(
    sqs_services: Services, llm: FakeLLM
) -> None:
    services = sqs_services
    total = await queue_scenario(services)
    queue = services.sqs
    assert queue is not None
    consumer = SqsConsumer(services.executor, queue, 1)
    stop = asyncio.Event()
    poller = asyncio.create_task(PriorityPoller(consumer, queue, 60, idle_wait_s=1).run(stop))
    try:
        await wait_all_ended(services, llm, total)
    finally:
        stop.set()
        await asyncio.wait_for(poller, 10)
    order = taken(llm)
    # one queue per priority (high: singles and batch jobs together), normal singles first
    keys = [(RANK[w.priority], w.priority == "normal" and w.kind == "batch") for w in order]
    assert keys == sorted(keys), order


async def test_sqs_messages_name_their_tenant_as_message_group(
    sqs_services: Services, aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    """What makes each queue an SQS fair queue (tenants' turns: SQS's, which moto does not
    model), and the lane a retry keeps."""
    await queue_scenario(sqs_services)
    sqs = await aws_clients.client("sqs")
    expected = {
        aws_layout.high_queue_url: {("B", "high"), ("C", "high")},
        aws_layout.queue_url: {("C", "normal")},
        aws_layout.batch_queue_url: {("A", "normal"), ("B", "normal"), ("C", "normal")},
        aws_layout.low_queue_url: {("A", "low"), ("B", "low")},
    }
    for url, lanes in expected.items():
        seen: set[tuple[str, str]] = set()
        for _ in range(30):
            answer = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["MessageGroupId"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                work = await sqs_services.store.get_job(job_id_of(message))
                assert work is not None
                assert message["Attributes"]["MessageGroupId"] == work.tenant
                seen.add((work.tenant, work.priority))
        assert seen == lanes, url


def job_id_of(message: dict[str, Any]) -> str:
    import json

    return str(json.loads(message["Body"])["job_id"])
