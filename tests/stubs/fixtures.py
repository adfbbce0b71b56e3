"""pytest fixtures for the stub LLM server: `llm_stub_server` (session), `llm_stub` (a test)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tests.stubs.llm_server import StubState, create_app


class LLMStub:
    """The stub server run by uvicorn in a background thread on a free loopback port."""

    def __init__(self) -> None:
        self.state = StubState()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(self.state), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="llm-stub", daemon=True)

    @property
    def gemini_base_url(self) -> str:
        return self.url

    @property
    def openrouter_base_url(self) -> str:
        return f"{self.url}/api/v1"

    def start(self) -> LLMStub:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the stub LLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def set(self, provider: str, mode: str = "ok", **options: Any) -> None:
        self.state.set(provider, mode, **options)

    def stats(self) -> dict[str, int]:
        return self.state.stats()

    def arrivals(self, provider: str) -> list[tuple[float, str]]:
        """(arrival time, API key) of each request to `provider`, in order."""
        return self.state.arrivals(provider)

    def calls_by_prompt(self) -> Counter[str]:
        return self.state.calls_by_prompt()

    def last_request(self, provider: str) -> dict[str, Any] | None:
        return self.state.last_request(provider)

    def seen_targets(self) -> list[str]:
        """Path and query of every request the server received, routed or not."""
        return self.state.seen_targets()

    def reset(self) -> None:
        self.state.reset()

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])


@pytest.fixture(scope="session")
def llm_stub_server() -> Iterator[LLMStub]:
    stub = LLMStub().start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture
def llm_stub(llm_stub_server: LLMStub) -> Iterator[LLMStub]:
    """The session's stub server, reset to answer normally before and after the test."""
    llm_stub_server.reset()
    yield llm_stub_server
    llm_stub_server.reset()
