"""Bad input answers 4xx with the error envelope naming the field; nothing answers 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.unit.conftest import T1, Api, chat, running_api

JSON = {"Content-Type": "application/json", **T1}


def user(content: Any = "hi", role: Any = "user") -> dict[str, Any]:
    return {"role": role, "content": content}


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing messages", {}, "messages"),
    ("empty messages", {"messages": []}, "messages"),
    ("bad role", {"messages": [user(role="bot")]}, "messages.0.role"),
    ("empty content", {"messages": [user("")]}, "messages.0.content"),
    ("content too long", {"messages": [user("x" * 100_001)]}, "messages.0.content"),
    ("too many messages", {"messages": [user()] * 101}, "messages"),
    ("no user turn", {"messages": [user(role="system")]}, "messages"),
    ("temperature 3", chat(temperature=3), "temperature"),
    ("max_tokens 0", chat(max_tokens=0), "max_tokens"),
    ("metadata non-string", chat(metadata={"k": 1}), "metadata.k"),
    ("metadata too many keys", chat(metadata={str(i): "v" for i in range(17)}), "metadata"),
    ("unknown field", chat(stream=True), "stream"),
    ("unknown message field", {"messages": [{**user(), "name": "x"}]}, "messages.0.name"),
    ("cache not bool", chat(cache="maybe"), "cache"),
    ("webhook_url too long", chat(webhook_url="https://x/" + "a" * 2048), "webhook_url"),
    ("model too long", chat(model="m" * 201), "model"),
    ("top_p above 1", chat(top_p=1.5), "top_p"),
    ("top_p a string", chat(top_p="0.5"), "top_p"),
    ("stop empty list", chat(stop=[]), "stop"),
    ("stop five strings", chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop empty string", chat(stop=[""]), "stop.0"),
    ("stop a number", chat(stop=3), "stop"),
    ("seed a float", chat(seed=1.5), "seed"),
    ("seed past 32 bits", chat(seed=2**31), "seed"),
    ("response_format unknown type", chat(response_format={"type": "xml"}), "response_format.type"),
    ("response_format a string", chat(response_format="json"), "response_format"),
    ("json_schema without its object", chat(response_format={"type": "json_schema"}),
     "response_format"),
    ("json_schema bad name", chat(response_format={"type": "json_schema", "json_schema": {
        "name": "no spaces", "schema": {}}}), "response_format.json_schema.name"),
    ("json_schema schema not an object", chat(response_format={"type": "json_schema",
        "json_schema": {"name": "a", "schema": []}}), "response_format.json_schema.schema"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_invalid_body_is_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.submit(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [f["field"] for f in error["fields"]]
    assert error["message"].startswith(field)
    assert api.store.jobs == {}


async def test_all_errors_are_listed(api: Api) -> None:
    response = await api.submit(chat(temperature=3, max_tokens=0))
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert fields == {"temperature", "max_tokens"}
    assert "(and 1 more)" in response.json()["error"]["message"]


async def test_malformed_json_is_422_naming_the_body(api: Api) -> None:
    response = await api.client.post("/v1/jobs", content=b'{"messages": [', headers=JSON)
    assert response.status_code == 422
    [field] = response.json()["error"]["fields"]
    assert field["field"] == "body" and "not valid JSON" in field["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_content_type_is_422(api: Api, content_type: str | None) -> None:
    headers = {**T1, **({"Content-Type": content_type} if content_type else {})}
    body = json.dumps(chat()).encode()
    response = await api.client.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code == 422
    [field] = response.json()["error"]["fields"]
    assert field == {"field": "body", "message": "Content-Type must be application/json"}


async def test_missing_body_is_422(api: Api) -> None:
    response = await api.client.post("/v1/jobs", headers=JSON)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs/job_x?wait=31", "wait"),
        ("/v1/jobs/job_x?wait=-1", "wait"),
        ("/v1/jobs/job_x?wait=soon", "wait"),
        ("/v1/jobs/job_x?wait=nan", "wait"),
        ("/v1/jobs/job_x?wait=inf", "wait"),
        ("/v1/jobs?limit=0", "limit"),
        ("/v1/jobs?limit=101", "limit"),
        ("/v1/jobs?status=done", "status"),
    ],
)
async def test_bad_query_is_422_naming_the_parameter(api: Api, path: str, field: str) -> None:
    response = await api.client.get(path, headers=T1)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_idempotency_key_longer_than_255_is_422(api: Api) -> None:
    headers = {**T1, "Idempotency-Key": "k" * 256}
    response = await api.submit(chat(), headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"].lower() == "idempotency-key"
    assert (await api.submit(chat(), {**T1, "Idempotency-Key": "k" * 255})).status_code == 202


async def test_body_over_max_body_bytes_is_413() -> None:
    async with running_api(max_body_bytes=2_000) as api:
        response = await api.submit(chat("x" * 3_000))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert api.store.jobs == {}
        assert (await api.submit(chat("x" * 1_000))).status_code == 202


async def test_chunked_body_over_max_body_bytes_is_413() -> None:
    async def chunks() -> Any:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}]}'

    async with running_api(max_body_bytes=2_000) as api:
        response = await api.client.post("/v1/jobs", content=chunks(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method_use_the_envelope(api: Api) -> None:
    missing = await api.client.get("/v2/nothing", headers=T1)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await api.client.delete("/v1/jobs", headers=T1)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_unexpected_errors_are_500_without_internals() -> None:
    async with running_api() as api:

        @api.app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals")

        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }


def _deep(depth: int) -> bytes:
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


ODD_BODIES: list[bytes | Any] = [
    None,
    [],
    "x",
    0,
    True,
    {"messages": None},
    {"messages": "hi"},
    {"messages": {}},
    {"messages": [None]},
    {"messages": [[]]},
    {"messages": [{}]},
    {"messages": [{"role": "user"}]},
    {"messages": [user(None)]},
    {"messages": [user(["a"])]},
    {"messages": [user({"text": "a"})]},
    {"messages": [user(role=None)]},
    {"messages": [user(role=["user"])]},
    chat(temperature="hot"),
    chat(temperature=1e308 * 10),
    chat(max_tokens=10**30),
    chat(max_tokens=1.5),
    chat(metadata=[]),
    chat(metadata={"a": {"b": {"c": []}}}),
    chat(metadata={"k" * 10_000: "v"}),
    chat(webhook_url=123),
    chat(webhook_url="http://a..b/"),
    chat(webhook_url="http://" + "a" * 300 + ".example/"),
    chat(webhook_url="http://[::1"),
    chat(webhook_url="http://:80/"),
    chat(webhook_url="javascript:alert(1)"),
    chat(webhook_url="http://user:pw@127.0.0.1/"),
    chat("\u0000\u202e\ufeff💥" * 100),
    chat(model=None, temperature=None, max_tokens=None, webhook_url=None),
    b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "\\udfff": 1}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 5000 + b"}",
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}',
    b"\xff\xfe\x00garbage",
    b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}',
    b"{" * 50_000,
    _deep(100_000),
    b'{"messages": [' + b'{"role": "user", "content": "a"},' * 20_000 + b"null]}",
    b"",
    b" ",
    b'{"messages": [{"role": "user", "content": "hi"}]}{"trailing": true}',
]


@pytest.mark.parametrize("body", ODD_BODIES, ids=lambda b: repr(b)[:40])
async def test_odd_bodies_never_cause_a_server_error(api: Api, body: Any) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await api.client.post("/v1/jobs", content=content, headers=JSON)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/hook", "http://127.0.0.1/", "http://[::1]/", "http://169.254.169.254/"]
)
async def test_refused_webhook_url_is_422_naming_it(url: str) -> None:
    async with running_api(webhook_allow_private=False) as api:
        response = await api.submit(chat(webhook_url=url))
        assert response.status_code == 422
        [field] = response.json()["error"]["fields"]
        assert field["field"] == "webhook_url" and "address" in field["message"]
        assert api.store.jobs == {}
