"""Structured logs: one JSON object a line carrying request_id, job_id, batch_id and tenant where
known; X-Request-ID accepted (sanitized) or made up, and echoed on every answer."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.logs import ContextFilter, TextFormatter, bound, json_formatter, resolve_format
from tests.conftest import make_settings
from tests.unit.conftest import T1, chat, running_api


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger's records as the processes write them in JSON mode."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_records_are_one_object_a_line_with_the_context(json_lines: io.StringIO) -> None:
    log = logging.getLogger("chatjobs.test")
    with bound(request_id="req-1", tenant="t1"), bound(job_id="job_1", batch_id=None):
        log.warning("first\nsecond line")
    log.warning("outside")
    inside, outside = records(json_lines)
    assert inside["message"] == "first\nsecond line"
    assert inside["level"] == "WARNING" and inside["logger"] == "chatjobs.test"
    assert {k: inside[k] for k in ("request_id", "tenant", "job_id")} == {
        "request_id": "req-1",
        "tenant": "t1",
        "job_id": "job_1",
    }
    assert "batch_id" not in inside and "time" in inside
    assert "request_id" not in outside


def test_text_records_stay_readable_and_show_the_context() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.request_id, record.job_id = "req-1", "job_1"
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO x: hello you [request_id=req-1 job_id=job_1]"


def test_text_on_a_terminal_json_otherwise_unless_log_format_says() -> None:
    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Tty()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    assert make_settings().log_format == "auto"
    assert make_settings(log_format="json").log_format == "json"


HEX_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_a_request_id_is_made_up_or_taken_and_echoed_on_every_answer() -> None:
    async with running_api() as api:
        made_up = await api.submit()
        assert HEX_ID.match(made_up.headers["x-request-id"])
        given = {**T1, "X-Request-ID": "client-42"}
        for response in (
            await api.client.post("/v1/jobs", json=chat(), headers=given),
            await api.client.get("/v1/jobs/job_missing", headers=given),
            await api.client.post("/v1/jobs", json={"messages": []}, headers=given),
            await api.client.delete("/v1/jobs", headers=given),
            await api.client.get("/healthz", headers={"X-Request-ID": "client-42"}),
        ):
            assert response.headers["x-request-id"] == "client-42", response.status_code


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        ("a b\tc\"d'e<f>", "abcdef"),
        ("x" * 500, "x" * 128),
        ("trace=ab/c:1@host", "trace=ab/c:1@host"),
    ],
)
async def test_a_request_id_is_sanitized_and_bounded(given: str, echoed: str) -> None:
    async with running_api() as api:
        response = await api.client.get("/healthz", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == echoed


async def test_an_unusable_request_id_is_replaced() -> None:
    async with running_api() as api:
        response = await api.client.get("/healthz", headers={"X-Request-ID": "\"' "})
    assert HEX_ID.match(response.headers["x-request-id"])


async def test_a_500_carries_the_request_id_and_logs_it(json_lines: io.StringIO) -> None:
    async with running_api() as api:

        @api.app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    [error] = [r for r in records(json_lines) if r["message"].startswith("unhandled error")]
    assert error["request_id"] == "req-500" and "exc_info" in error


async def test_request_logs_carry_the_request_id_and_tenant(json_lines: io.StringIO) -> None:
    async with running_api() as api:
        api.queue.refuse = True
        response = await api.client.post(
            "/v1/jobs", json=chat(), headers={**T1, "X-Request-ID": "req-503"}
        )
    assert response.status_code == 503
    [warning] = [r for r in records(json_lines) if r["message"].startswith("queue unavailable")]
    assert warning["request_id"] == "req-503" and warning["tenant"] == "t1"


async def test_in_process_jobs_log_with_their_job_id(json_lines: io.StringIO) -> None:
    queue = InProcessJobQueue(concurrency=1)
    done = asyncio.Event()

    async def handler(job_id: str) -> None:
        logging.getLogger("chatjobs.test").info("running")
        done.set()

    logger = logging.getLogger("chatjobs.test")
    logger.setLevel(logging.INFO)
    try:
        await queue.start(handler)
        await queue.enqueue("job_7")
        await asyncio.wait_for(done.wait(), 5)
        await queue.close()
    finally:
        logger.setLevel(logging.NOTSET)
    [running] = [r for r in records(json_lines) if r["message"] == "running"]
    assert running["job_id"] == "job_7"
