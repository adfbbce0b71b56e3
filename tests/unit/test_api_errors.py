"""Domain errors reach clients through one table (api/errors.py DOMAIN_ANSWERS)."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message, Scope

import shared.errors as errors
from api.errors import DOMAIN_ANSWERS, answer_for
from tests.unit.conftest import T1, Api, chat

# Raised and answered inside their routes (with the parameter they concern), or never reach HTTP.
HANDLED_ELSEWHERE = {
    errors.ChatJobsError,
    errors.LLMError,
    errors.TransientLLMError,
    errors.PermanentLLMError,
    errors.QuotaExceeded,  # an LLM error: the worker waits, it never reaches HTTP
    errors.InvalidCursor,
    errors.InvalidPeriod,
}


def test_every_domain_error_has_an_answer() -> None:
    domain = {
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, errors.ChatJobsError)
    }
    missing = {kind.__name__ for kind in domain - HANDLED_ELSEWHERE if answer_for(kind) is None}
    assert not missing
    assert set(DOMAIN_ANSWERS) <= domain


@pytest.mark.parametrize("path", ["/v1/jobs/{}", "/v1/batches/{}", "/v1/batches/{}/results"])
async def test_a_404_echoes_a_bounded_part_of_the_id(api: Api, path: str) -> None:
    answer = await api.client.get(path.format("x" * 10_000), headers=T1)

    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert message.startswith("x" * 64 + "…") and len(message) < 100


async def test_an_unknown_model_names_the_field(api: Api) -> None:
    answer = await api.submit(chat(model="nope"))

    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["field"] == "model"


async def test_a_client_that_drops_its_upload_is_logged_once_at_info(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b'{"custom_id": "a", ', "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {
        "type": "http", "method": "POST", "path": "/v1/batches", "raw_path": b"/v1/batches",
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("api.test", 80), "client": ("127.0.0.1", 5000),
        "headers": [(b"authorization", b"Bearer k1"), (b"content-type", b"application/x-ndjson"),
                    (b"content-length", b"100000")],
    }  # fmt: skip
    caplog.set_level(logging.INFO)
    await api.app(scope, receive, send)

    disconnects = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert [r.levelno for r in disconnects] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
