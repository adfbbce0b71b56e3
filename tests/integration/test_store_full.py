"""A full store: SQLite's `PRAGMA max_page_count` gives a real SQLITE_FULL ("database or disk is
full"), as a full disk does. Submits then answer 503 `store_full` with Retry-After on a connection
that stays open, /readyz fails while writes fail, and once there is room again submits are
accepted, /readyz is ready and every job accepted before is there and finishes."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from shared.adapters.store.sqlite import SqliteJobStore
from shared.factory import ServiceFactory
from tests.conftest import make_settings
from tests.fakes import FakeLLM

pytestmark = pytest.mark.integration

BIG = "x" * 20_000  # a job of several pages: a capped file fills after a few
NO_LIMIT = 1_073_741_823


class Connection:
    """One HTTP/1.1 keep-alive connection (http.client, in a thread): a server that drops it
    after a response makes the next request fail instead of quietly opening another."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.socket: socket.socket | None = None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
        return await asyncio.to_thread(self._call, method, path, body)

    def _call(self, method: str, path: str, body: Any) -> tuple[int, Any, Any]:
        headers = {"Authorization": "Bearer k1", "Content-Type": "application/json"}
        self.http.request(method, path, json.dumps(body) if body else None, headers)
        response = self.http.getresponse()
        data = json.loads(response.read())
        if self.socket is None:
            self.socket = self.http.sock
        assert self.http.sock is self.socket, "the server closed the keep-alive connection"
        return response.status, response.headers, data

    async def submit(self) -> tuple[int, Any, Any]:
        """A job of several pages, never a cache hit."""
        message = {"role": "user", "content": BIG}
        return await self.call("POST", "/v1/jobs", {"messages": [message], "cache": False})


@asynccontextmanager
async def serving(store: SqliteJobStore) -> AsyncIterator[int]:
    """The API (embedded: in-process workers) on `store`, served by uvicorn in this loop."""
    settings = make_settings(api_keys="t1:k1", sqlite_path=store.path, llm_timeout_s=1.0)
    app = create_app(ServiceFactory(settings, store=store, llm=FakeLLM()))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        listener.close()


async def set_max_pages(store: SqliteJobStore, pages: int) -> None:
    """On the store's writer connection (max_page_count is per connection); a limit below the
    file's size holds it at its size."""
    assert store._writer is not None
    await store._writer.run(lambda db: db.execute(f"PRAGMA max_page_count = {pages}").fetchall())


async def all_finished(store: SqliteJobStore, ids: list[str], within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while True:
        jobs = [await store.get_job(job_id) for job_id in ids]
        states = [job.status.value if job else "missing" for job in jobs]
        if all(state == "succeeded" for state in states) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.2)


async def test_a_full_store_answers_503_and_recovers_losing_nothing(tmp_path: Path) -> None:
    store = SqliteJobStore(str(tmp_path / "chatjobs.db"))
    async with serving(store) as port:
        client = Connection(port)
        accepted = [(await client.submit())[2]["id"] for _ in range(3)]

        await set_max_pages(store, 1)
        for _ in range(200):
            status, headers, body = await client.submit()
            if status != 202:
                break
            accepted.append(body["id"])
        assert status == 503, body
        assert body["error"]["code"] == "store_full"
        assert int(headers["Retry-After"]) > 0

        status, _, body = await client.call("GET", "/readyz")
        assert (status, body["checks"]["store"]) == (503, "failing"), body
        assert (await client.submit())[0] == 503  # still full: still refused, still a 503

        await set_max_pages(store, NO_LIMIT)
        status, _, body = await client.call("GET", "/readyz")
        assert (status, body["status"]) == (200, "ready"), body
        status, _, body = await client.submit()
        assert status == 202, body
        accepted.append(body["id"])

        for job_id in accepted:
            assert (await client.call("GET", f"/v1/jobs/{job_id}"))[0] == 200
        states = await all_finished(store, accepted, within_s=30)
        assert states == ["succeeded"] * len(accepted)
