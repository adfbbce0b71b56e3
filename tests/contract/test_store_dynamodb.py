"""The Store contract on DynamoDbJobStore, against moto's server (a fresh table per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.dynamodb_items import Item, batch_key, job_key
from shared.job_writes import JobWrites
from shared.models import BatchStatus, JobStatus, utcnow
from shared.ports import Store
from shared.transitions import JobOutcome
from tests.contract.test_store_contract import (
    RETENTION,
    JobStoreContract,
    lease,
    make_batch,
    make_job,
)

pytestmark = pytest.mark.integration


class TestDynamoDbJobStore(JobStoreContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        store = DynamoDbJobStore(aws_clients, aws_layout.table, retention=RETENTION)
        await store.start()
        yield store
        await store.close()


class TestDynamoDbRetention:
    """DynamoDB deletes by TTL, which moto does not run: an ended record must carry the right
    epoch, a record that may still change none, and the table must have TTL on that attribute."""

    async def test_the_table_expires_items_by_the_ttl_attribute(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> None:
        ddb = await aws_clients.client("dynamodb")
        ttl = (await ddb.describe_time_to_live(TableName=aws_layout.table))["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", names.TTL_ATTRIBUTE)

    async def test_ended_jobs_and_batches_expire_retention_after_they_ended(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> None:
        store = DynamoDbJobStore(aws_clients, aws_layout.table, retention=RETENTION)
        await store.start()
        job = await store.create_job(make_job())
        assert await expiry(aws_clients, aws_layout, job_key(job.id)) is None
        await JobWrites(store).claim(job.id, **lease())
        assert await expiry(aws_clients, aws_layout, job_key(job.id)) is None
        done = await JobWrites(store).finish(
            job.id, JobOutcome(JobStatus.succeeded, JobStatus.running)
        )
        assert done is not None and done.completed_at is not None
        assert await expiry(aws_clients, aws_layout, job_key(job.id)) == epoch(done.completed_at)

        batch, jobs = make_batch(1, cached=1)
        await store.create_batch(batch, jobs)
        assert await expiry(aws_clients, aws_layout, batch_key(batch.id)) is None
        ended = utcnow()
        await store.mark_batch(
            batch.id, expect=[BatchStatus.in_progress], to=BatchStatus.completed, completed_at=ended
        )
        assert await expiry(aws_clients, aws_layout, batch_key(batch.id)) == epoch(ended)
        await store.mark_batch(batch.id, expect=[BatchStatus.completed], to=BatchStatus.in_progress)
        assert await expiry(aws_clients, aws_layout, batch_key(batch.id)) is None  # open again

    async def test_without_retention_nothing_expires(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> None:
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        job = await store.create_job(make_job(status=JobStatus.succeeded, completed_at=utcnow()))
        assert await expiry(aws_clients, aws_layout, job_key(job.id)) is None


def epoch(ended: datetime) -> int:
    return int((ended + RETENTION).timestamp())


async def expiry(clients: AwsClients, layout: AwsLayout, key: Item) -> int | None:
    """The TTL attribute of the stored item, read raw."""
    ddb = await clients.client("dynamodb")
    item = (await ddb.get_item(TableName=layout.table, Key=key, ConsistentRead=True))["Item"]
    return int(item[names.TTL_ATTRIBUTE]["N"]) if names.TTL_ATTRIBUTE in item else None
