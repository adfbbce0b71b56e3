"""moto in server mode on loopback, and a fresh AWS layout (table, queues, secret) per test.

Clients reach moto over HTTP through AWS_ENDPOINT_URL, so adapters speak the real wire protocol.
Fake credentials are set for the whole session: nothing here can reach real AWS. The server is
`make aws-local`'s (shared/adapters/aws/emulator.py): DynamoDB requests atomic, as on AWS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.emulator import moto_server
from shared.adapters.aws.setup import AwsLayout, create_layout

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
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
