"""ServedApi: the real app (create_app) served by uvicorn on a free loopback port, in a thread of
the test process with its own event loop, so blocking clients (the `openai` SDK, httpx) reach it
over HTTP as they would a deployed service. ServedWorker: an arq worker beside it (Redis mode)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn

from api.app import create_app
from shared.config import Settings
from shared.factory import ServiceFactory
from worker.supervisor import Supervisor

START_TIMEOUT_S = 20.0


class ServedApi:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        app = create_app(ServiceFactory(settings))
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="served-api", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def __enter__(self) -> ServedApi:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()


class ServedWorker:
    """A worker (`Supervisor`: arq Workers and the batch runner) in a thread of the test process
    with its own event loop, next to a ServedApi on the same Redis and store."""

    def __init__(self, settings: Settings) -> None:
        self.supervisor = Supervisor(settings, handle_signals=False)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="served-worker", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.supervisor.run())

    def __enter__(self) -> ServedWorker:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self.supervisor.stop)
        self._thread.join(timeout=15)
        if not self._thread.is_alive():
            self._loop.close()
