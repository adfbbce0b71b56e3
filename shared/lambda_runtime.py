"""LambdaRuntime: what one Lambda container keeps between invocations.

One event loop for the container's life, and the Services started on it once, on the first
invocation: every warm invocation reuses the same store, queue, cache and LLM clients (they are
bound to the loop they were opened on). The container is frozen between invocations and killed
without notice, so nothing is closed: the state that matters is in DynamoDB and SQS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from shared.config import Settings
from shared.factory import ServiceFactory, Services

T = TypeVar("T")


class LambdaRuntime:
    def __init__(self, factory: ServiceFactory | None = None) -> None:
        self.factory = factory or ServiceFactory(Settings())
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs on the current loop
        self._services: Services | None = None

    @property
    def settings(self) -> Settings:
        return self.factory.settings

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        self.enter()
        return self.loop.run_until_complete(coroutine)

    def enter(self) -> None:
        """Make this runtime's loop the current one (Mangum runs on the current loop)."""
        asyncio.set_event_loop(self.loop)

    def services(self) -> Services:
        """Started on first use (a cold start), then the same object for every invocation."""
        if self._services is None:
            self._services = self.run(self.factory.start(consume=False, deliver_webhooks=False))
        return self._services

    def close(self) -> None:
        """For tests and local runs; Lambda itself never calls it."""
        if self._services is not None:
            self.run(self._services.close())
            self._services = None
        self.loop.close()
