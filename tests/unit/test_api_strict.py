"""The contract is as strict as it says: no type coercion, every unparseable body a 422 with the
error object (on /v1/jobs as on /v1/batches), bounded metadata keys, complete `Allow` headers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.conftest import T1, Api, chat

JSON = {"Content-Type": "application/json", **T1}
NDJSON = {"Content-Type": "application/x-ndjson", **T1}

COERCED: list[tuple[str, dict[str, Any], str]] = [
    ('cache "yes"', {"cache": "yes"}, "cache"),
    ("cache 0", {"cache": 0}, "cache"),
    ("cache 1", {"cache": 1}, "cache"),
    ('temperature "1"', {"temperature": "1"}, "temperature"),
    ("temperature true", {"temperature": True}, "temperature"),
    ("max_tokens true", {"max_tokens": True}, "max_tokens"),
    ('max_tokens "5"', {"max_tokens": "5"}, "max_tokens"),
    ("max_tokens 5.0", {"max_tokens": 5.0}, "max_tokens"),
    ("content 5", {"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ("metadata value 1", {"metadata": {"k": 1}}, "metadata.k"),
]


def item(custom_id: str, **fields: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, **chat(), **fields}


async def post_batch_json(api: Api, body: Any) -> httpx.Response:
    return await api.client.post("/v1/batches", json=body, headers=T1)


async def post_batch_ndjson(api: Api, lines: list[dict[str, Any]]) -> httpx.Response:
    content = "\n".join(json.dumps(line) for line in lines).encode()
    return await api.client.post("/v1/batches", content=content, headers=NDJSON)


def assert_422(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert any(f["field"].endswith(field) for f in error["fields"]), error


@pytest.mark.parametrize(("fields", "field"), [c[1:] for c in COERCED], ids=[c[0] for c in COERCED])
async def test_values_of_the_wrong_type_are_422_not_coerced(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    assert_422(await api.submit({**chat(), **fields}), field)
    assert_422(await post_batch_json(api, {"requests": [item("a", **fields)]}), field)
    assert_422(await post_batch_ndjson(api, [item("a", **fields)]), field)
    assert api.store.jobs == {}


async def test_an_integer_temperature_is_still_a_number(api: Api) -> None:
    response = await api.submit(chat(temperature=1))
    assert response.status_code == 202, response.text
    assert (await post_batch_json(api, {"requests": [item("a", temperature=0)]})).status_code == 202


UNPARSEABLE = {
    "not UTF-8": b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
    "UTF-16": json.dumps(chat()).encode("utf-16"),
    "5,000-digit integer": b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": '
    + b"9" * 5000
    + b"}",
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("body", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
async def test_bodies_json_cannot_take_are_422_with_the_error_object(api: Api, body: bytes) -> None:
    for path in ("/v1/jobs", "/v1/batches"):
        response = await api.client.post(path, content=body, headers=JSON)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["fields"][0]["field"] == "body"
        assert "not valid JSON" in error["message"]


async def test_metadata_keys_are_bounded_like_values(api: Api) -> None:
    assert (await api.submit(chat(metadata={"k" * 64: "v"}))).status_code == 202
    long_key = {"k" * 65: "v"}
    for response in (
        await api.submit(chat(metadata=long_key)),
        await post_batch_json(api, {"requests": [item("a")], "metadata": long_key}),
        await post_batch_json(api, {"requests": [item("a", metadata=long_key)]}),
        await post_batch_ndjson(api, [item("a", metadata=long_key)]),
    ):
        assert_422(response, "[key]")
        assert "at most 64 characters" in response.json()["error"]["message"]
    assert len(api.store.jobs) == 1


async def test_a_lone_surrogate_is_refused_in_a_metadata_key_as_in_a_value(api: Api) -> None:
    prompt = '"messages": [{"role": "user", "content": "hi"}]'
    for metadata in ('{"\\ud800": "v"}', '{"k": "\\ud800"}'):
        body = f'{{{prompt}, "metadata": {metadata}}}'.encode()
        response = await api.client.post("/v1/jobs", content=body, headers=JSON)
        assert response.status_code == 422, (metadata, response.text)
        assert response.json()["error"]["fields"][0]["field"].startswith("metadata.")
        line = f'{{"custom_id": "a", {prompt}, "metadata": {metadata}}}'.encode()
        response = await api.client.post("/v1/batches", content=line, headers=NDJSON)
        assert response.status_code == 422, (metadata, response.text)
    assert api.store.jobs == {}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/jobs", "GET, POST"),
        ("PUT", "/v1/jobs", "GET, POST"),
        ("PUT", "/v1/jobs/job_1", "DELETE, GET"),
        ("GET", "/v1/jobs/job_1/cancel", "POST"),
        ("DELETE", "/v1/batches", "GET, POST"),
        ("GET", "/v1/batches/batch_1/retry-failed", "POST"),
        ("PATCH", "/v1/batches/batch_1", "GET"),
        ("POST", "/v1/batches/batch_1/results", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_405_lists_every_allowed_method(api: Api, method: str, path: str, allow: str) -> None:
    response = await api.client.request(method, path, headers=T1)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed" and allow in error["message"]
