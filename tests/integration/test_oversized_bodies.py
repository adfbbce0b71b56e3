"""An oversized body is answered 413, and the client reads that answer: the API reads and drops
the rest of the body before it answers (api/bodylimit.py), since answering and closing while
the client still sends makes the kernel reset the connection, and clients that send the whole
body before reading (httpx here, the `openai` SDK) then see a connection error, not the 413."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.serving import ServedApi

LIMIT = 1_000_000
BODY = 24 * 1024 * 1024  # far more than the kernel's socket buffers hold: the reset is certain
TRIES = 5


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = Path(tmp_path_factory.mktemp("oversized"))
    settings = make_settings(
        sqlite_path=str(folder / "chatjobs.db"),
        files_dir=str(folder / "files"),
        max_body_bytes=LIMIT,
    )
    with ServedApi(settings) as api:
        yield api.url


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_the_client_reads_413_not_a_reset(url: str, declared: bool) -> None:
    """Every try answers 413 (a connection error fails the test: no retries here)."""
    body = b"x" * BODY if declared else None
    for _ in range(TRIES):
        with httpx.Client(timeout=60) as client:
            answer = client.post(
                f"{url}/v1/jobs",
                content=body if body is not None else chunks(BODY),
                headers={"Content-Type": "application/json"},
            )
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
