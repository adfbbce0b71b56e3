"""The HTTP contract of a real `python -m api` with API keys: tenants, auth, validation, odd input.

One API process serves the whole module (embedded mode, offline LLM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api, Launcher, chat

pytestmark = pytest.mark.e2e

MB = 1_000_000


@pytest.fixture(scope="module")
def api(module_launcher: Launcher) -> Api:
    return module_launcher.api(API_KEYS="t1:k1,t2:k2")


@pytest.fixture(scope="module")
def t1(api: Api) -> Iterator[httpx.Client]:
    with api.client("k1") as client:
        yield client


@pytest.fixture(scope="module")
def t2(api: Api) -> Iterator[httpx.Client]:
    with api.client("k2") as client:
        yield client


@pytest.fixture(scope="module")
def t1_job(api: Api, t1: httpx.Client) -> dict[str, Any]:
    response = t1.post("/v1/jobs", json=chat("tenant one's secret"))
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_a_tenant_cannot_see_or_cancel_another_tenants_job(
    t1: httpx.Client, t2: httpx.Client, t1_job: dict[str, Any]
) -> None:
    job_id = t1_job["id"]
    assert t1.get(f"/v1/jobs/{job_id}").status_code == 200

    for response in (t2.get(f"/v1/jobs/{job_id}"), t2.post(f"/v1/jobs/{job_id}/cancel")):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert job_id not in {job["id"] for job in t2.get("/v1/jobs").json()["data"]}
    assert job_id in {job["id"] for job in t1.get("/v1/jobs").json()["data"]}


def test_the_same_prompt_is_not_served_from_another_tenants_cache(
    api: Api, t1: httpx.Client, t2: httpx.Client, t1_job: dict[str, Any]
) -> None:
    api.wait_terminal([t1_job["id"]], timeout=20, client=t1)
    response = t2.post("/v1/jobs", json=chat("tenant one's secret"))
    assert response.status_code == 202, response.text
    assert response.json()["cached"] is False


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer"},
        {"Authorization": "k1"},
        {"Authorization": "Basic azE6azE="},
    ],
    ids=["no key", "wrong key", "empty key", "no scheme", "basic auth"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/job_x"),
        ("POST", "/v1/jobs/job_x/cancel"),
        ("GET", "/v1/webhook-secret"),
    ],
)
def test_requests_without_a_valid_key_answer_401(
    api: Api, headers: dict[str, str], method: str, path: str
) -> None:
    response = api.http.request(method, path, headers=headers, json=chat("hi"))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only a system turn"}]}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        (chat("hi", temperature=3), "temperature"),
        (chat("hi", temperature="warm"), "temperature"),
        (chat("hi", max_tokens=0), "max_tokens"),
        (chat("hi", metadata={"k": 1}), "metadata.k"),
        (chat("hi", cache="maybe"), "cache"),
        (chat("hi", webhook_url="http://169.254.169.254/latest/meta-data"), "webhook_url"),
        (chat("hi", surprise=True), "surprise"),
    ],
)
def test_bad_bodies_answer_422_naming_the_field(
    t1: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = t1.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"][0]["field"] == field, error
    assert error["message"]


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"messages": [{"role": "user", "content": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}]}'


def huge_body(size: int) -> bytes:
    return json.dumps(chat("a" * size)).encode()


JSON = {"Content-Type": "application/json"}
ODD_INPUTS: list[tuple[str, str, str, dict[str, Any], set[int]]] = [
    ("huge body", "POST", "/v1/jobs", {"content": huge_body(2 * MB), "headers": JSON}, {413}),
    ("huge chunked body", "POST", "/v1/jobs",
     {"content": list(chunks(2 * MB)), "headers": JSON}, {413}),  # no Content-Length
    ("huge batch line", "POST", "/v1/batches",
     {"content": json.dumps({"requests": [{"custom_id": "a", **chat("a" * 2 * MB)}]}),
      "headers": JSON}, {422}),  # batches may be larger; the line is not
    ("invalid JSON", "POST", "/v1/jobs", {"content": b'{"messages": [', "headers": JSON}, {422}),
    ("not UTF-8", "POST", "/v1/jobs", {"content": b'{"m": "\xff\xfe"}', "headers": JSON},
     {422}),
    ("wrong content type", "POST", "/v1/jobs",
     {"content": json.dumps(chat("hi")), "headers": {"Content-Type": "text/plain"}}, {422}),
    ("form body", "POST", "/v1/jobs", {"data": {"messages": "hi"}}, {422}),
    ("empty body", "POST", "/v1/jobs", {"content": b"", "headers": JSON}, {422}),
    ("JSON null", "POST", "/v1/jobs", {"content": b"null", "headers": JSON}, {422}),
    ("JSON array", "POST", "/v1/jobs", {"json": [chat("hi")]}, {422}),
    ("JSON string", "POST", "/v1/jobs", {"json": "hi"}, {422}),
    ("deeply nested", "POST", "/v1/jobs",
     {"content": b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": JSON},
     {422}),
    ("NaN temperature", "POST", "/v1/jobs",
     {"content": b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
      "headers": JSON}, {422}),
    ("huge max_tokens", "POST", "/v1/jobs", {"json": chat("x", max_tokens=10**30)}, {422}),
    ("lone surrogate", "POST", "/v1/jobs",
     {"content": b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "headers": JSON},
     {422}),
    ("NUL in content", "POST", "/v1/jobs", {"json": chat("nul \x00 byte")}, {202}),
    ("too many metadata keys", "POST", "/v1/jobs",
     {"json": chat("x", metadata={f"k{n}": "v" for n in range(50)})}, {422}),
    ("long Idempotency-Key", "POST", "/v1/jobs",
     {"json": chat("x"), "headers": {"Idempotency-Key": "k" * 1000}}, {422}),
    ("unknown job", "GET", "/v1/jobs/job_doesnotexist", {}, {404}),
    ("very long job id", "GET", "/v1/jobs/" + "j" * 5000, {}, {404}),
    ("NUL job id", "GET", "/v1/jobs/%00", {}, {404}),
    ("negative wait", "GET", "/v1/jobs/job_x?wait=-1", {}, {422}),
    ("NaN wait", "GET", "/v1/jobs/job_x?wait=nan", {}, {422}),
    ("infinite wait", "GET", "/v1/jobs/job_x?wait=inf", {}, {422}),
    ("wait too long", "GET", "/v1/jobs/job_x?wait=31", {}, {422}),
    ("bad limit", "GET", "/v1/jobs?limit=0", {}, {422}),
    ("huge limit", "GET", "/v1/jobs?limit=100000000000000000000", {}, {422}),
    ("bad status", "GET", "/v1/jobs?status=exploded", {}, {422}),
    ("bad cursor", "GET", "/v1/jobs?cursor=%%%not-a-cursor", {}, {422}),
    ("cancel unknown job", "POST", "/v1/jobs/job_nope/cancel", {}, {404}),
    ("wrong method", "PUT", "/v1/jobs", {"json": chat("x")}, {405}),
    ("unknown path", "GET", "/v2/everything", {}, {404}),
    ("unknown batch", "GET", "/v1/batches/batch_nope", {}, {404}),
    ("batch of garbage", "POST", "/v1/batches",
     {"content": b"not json\n{}\n", "headers": {"Content-Type": "application/x-ndjson"}}, {422}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in ODD_INPUTS],
)
def test_odd_input_never_answers_500(
    api: Api, t1: httpx.Client, method: str, path: str, kwargs: dict[str, Any], expected: set[int]
) -> None:
    response = t1.request(method, path, timeout=10, **kwargs)
    assert response.status_code in expected, response.text[:500]
    if response.status_code >= 400:
        assert response.json()["error"]["code"], response.text[:500]


def test_the_api_logs_json_lines_carrying_the_request_id_and_tenant(
    api: Api, t1: httpx.Client
) -> None:
    """Not a terminal, no LOG_FORMAT: JSON. uvicorn's access line goes through the same handler."""
    response = t1.get("/v1/jobs/job_nowhere", headers={"X-Request-ID": "e2e-trace-7"})
    assert response.status_code == 404 and response.headers["x-request-id"] == "e2e-trace-7"
    records = [json.loads(line) for line in api.proc.log().splitlines() if line.startswith("{")]
    assert len(records) >= 3
    traced = [r for r in records if r.get("request_id") == "e2e-trace-7"]
    assert traced, records[-3:]
    assert traced[-1]["tenant"] == "t1" and traced[-1]["job_id"] == "job_nowhere"
    assert "GET /v1/jobs/job_nowhere" in traced[-1]["message"]  # the access line


def test_the_api_logged_no_unhandled_error(api: Api) -> None:
    """Runs last in this module: nothing above crashed inside the server."""
    log = api.proc.log()
    assert "unhandled error" not in log and "Traceback" not in log, log[-5000:]
    assert api.proc.popen.poll() is None
