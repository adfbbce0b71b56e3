"""An API app wired to fakes at every port, with its lifespan running, behind an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from shared.factory import ServiceFactory
from tests.conftest import make_settings
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache

T1 = {"Authorization": "Bearer k1"}
T2 = {"Authorization": "Bearer k2"}


def chat(prompt: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], **extra}


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    store: FakeJobStore
    cache: FakeResultCache
    queue: FakeJobQueue
    llm: FakeLLM

    async def submit(
        self, body: dict[str, Any] | None = None, headers: dict[str, str] = T1
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/jobs", json=chat() if body is None else body, headers=headers
        )


@asynccontextmanager
async def running_api(**settings: Any) -> AsyncIterator[Api]:
    store, cache, queue, llm = FakeJobStore(), FakeResultCache(), FakeJobQueue(), FakeLLM()
    config = make_settings(**{"api_keys": "t1:k1,t2:k2", "queue_backend": "inprocess", **settings})
    factory = ServiceFactory(config, store=store, cache=cache, queue=queue, llm=llm)
    app = create_app(factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield Api(app, client, store, cache, queue, llm)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running
