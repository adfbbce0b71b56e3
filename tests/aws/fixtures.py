"""moto in server mode on loopback, and a fresh AWS layout (table, queues, secret) per test.

Clients reach moto over HTTP through AWS_ENDPOINT_URL, so adapters speak the real wire protocol.
Fake credentials are set for the whole session: nothing here can reach real AWS.
"""

from __future__ import annotations

import copy
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.local import moto_server
from shared.adapters.aws.setup import AwsLayout, create_layout

REGION = "us-east-1"


_MOTO_DYNAMODB = threading.Lock()


def _one_dynamodb_request_at_a_time() -> None:
    """DynamoDB applies each request atomically; moto's server does not. It serves each request
    on its own thread, and a transaction deep-copies the table and puts the copy back when a
    condition fails, undoing what other requests wrote meanwhile. So moto's DynamoDB requests are
    run one at a time here, for the whole session (the server runs in this process)."""
    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action

    def one_at_a_time(handler: DynamoHandler) -> Any:
        with _MOTO_DYNAMODB:
            return call_action(handler)

    # patched on purpose: moto offers no hook around a request
    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]


def _transactions_roll_back_only_their_items() -> None:
    """moto makes a transaction undoable by deep-copying the whole table, once per item: with a
    few thousand items that is most of a test's time. Here a transaction snapshots just the items
    it names and puts those back when it fails, which undoes the same writes (DynamoDB requests
    are already serialised, so nothing else writes meanwhile)."""
    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    class TablesKept:
        """Stands in for the `copy` module that moto's DynamoDB models import."""

        @staticmethod
        def deepcopy(value: Any) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value)

    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(
        self: models.DynamoDBBackend, transact_items: list[dict[str, Any]]
    ) -> None:
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op["Item"]
            h = DynamoType(key[table.hash_key_attr])
            r = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            saved.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
        try:
            with mock.patch.object(models, "copy", TablesKept):
                transact(self, transact_items)
        except Exception:
            for table, h, r, item in reversed(saved):
                _put_back(table, h, r, item)
            raise

    # patched on purpose, like DynamoHandler.call_action above
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Make the table hold `item` (None: nothing) under the key again."""
    if table.get_item(hash_key, range_key) is not None:
        table.delete_item(hash_key, range_key)
    if item is None:
        return
    if range_key is None:
        table.items[hash_key] = item
    else:
        table.items[hash_key][range_key] = item


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    _one_dynamodb_request_at_a_time()
    _transactions_roll_back_only_their_items()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
async def aws_clients(moto_endpoint: str) -> AsyncIterator[AwsClients]:
    clients = AwsClients(endpoint_url=moto_endpoint, region=REGION)
    yield clients
    await clients.close()


@pytest.fixture
async def aws_layout(aws_clients: AwsClients) -> AwsLayout:
    """A table, two queues with DLQs and a secret of this test's own (unique names)."""
    return await create_layout(aws_clients, prefix=f"t{uuid.uuid4().hex[:10]}-")
