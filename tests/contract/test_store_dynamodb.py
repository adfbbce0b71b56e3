"""The Store contract on DynamoDbJobStore, against moto's server (a fresh table per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.ports import Store
from tests.contract.test_store_contract import JobStoreContract

pytestmark = pytest.mark.integration


class TestDynamoDbJobStore(JobStoreContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        yield store
        await store.close()
