"""AwsClients: the process's aioboto3 clients, each created once and closed once.

Every AWS adapter (store, cache, queue, rate limit) takes its client from here, so a Lambda
container opens one DynamoDB and one SQS client on its first invocation and reuses them for every
warm invocation after it. Clients are bound to the event loop they were opened on.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

CLIENT_CONFIG = AioConfig(retries={"max_attempts": 4, "mode": "adaptive"}, max_pool_connections=64)


class AwsClients:
    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = aioboto3.Session(region_name=region)
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self.opened = 0  # how many clients this process created (tests check it stays small)

    async def client(self, service: str) -> Any:
        """The shared client for `service` ("dynamodb", "sqs", "secretsmanager"), opened once."""
        if service not in self._clients:
            maker = self._session.client(
                service, endpoint_url=self.endpoint_url, config=CLIENT_CONFIG
            )
            self._clients[service] = await self._stack.enter_async_context(maker)
            self.opened += 1
        return self._clients[service]

    async def close(self) -> None:
        self._clients.clear()
        stack, self._stack = self._stack, AsyncExitStack()  # usable again after a close
        await stack.aclose()
