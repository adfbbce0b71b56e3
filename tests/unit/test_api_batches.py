"""/v1/batches and /v1/webhook-secret through the app, with fakes at the ports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from shared.errors import PermanentLLMError
from shared.job_writes import JobWrites
from shared.models import ChatRequest, Completion, JobStatus, Message, utcnow
from shared.service import cache_key
from shared.webhooks import tenant_secret
from tests.unit.conftest import T1, T2, Api, chat, running_api

JSON = {"Content-Type": "application/json", **T1}
NDJSON = {"Content-Type": "application/x-ndjson", **T1}
# The first attempt of a webhook is due an hour after the event: no test here sends one.
QUIET_WEBHOOKS = {"webhook_retry_schedule": "3600"}
HOOK = "http://127.0.0.1:9/hook"


def item(custom_id: str, prompt: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, **chat(prompt or f"prompt {custom_id}"), **extra}


def ndjson(*lines: dict[str, Any] | str) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode() + b"\n"


async def post_json(api: Api, body: dict[str, Any], headers: dict[str, str] = JSON) -> Any:
    return await api.client.post("/v1/batches", json=body, headers=headers)


async def post_ndjson(api: Api, body: bytes, **params: str) -> httpx.Response:
    return await api.client.post("/v1/batches", content=body, headers=NDJSON, params=params)


async def results(api: Api, batch_id: str, headers: dict[str, str] = T1) -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/batches/{batch_id}/results", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def read_batch(api: Api, batch_id: str, headers: dict[str, str] = T1) -> dict[str, Any]:
    response = await api.client.get(f"/v1/batches/{batch_id}", headers=headers)
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def assert_nothing_stored(api: Api) -> None:
    assert api.store.jobs == {} and api.store.batches == {}
    assert api.queue.pending == []


@pytest.fixture
async def quiet_api() -> AsyncIterator[Api]:
    async with running_api(**QUIET_WEBHOOKS) as running:
        yield running


# --- submitting -------------------------------------------------------------------------------


async def test_json_batch_is_stored_queued_and_run(api: Api) -> None:
    body = {"requests": [item("a"), item("b")], "metadata": {"team": "x"}}
    response = await post_json(api, body)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["location"] == f"/v1/batches/{batch['id']}"
    assert batch["object"] == "batch" and batch["status"] == "in_progress"
    assert batch["metadata"] == {"team": "x"}
    assert batch["counts"] == {
        "total": 2, "queued": 2, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0
    }  # fmt: skip
    assert "tenant" not in batch and "webhook_url" not in batch
    assert len(api.queue.pending) == 2

    assert await api.queue.drain() == 2
    done = await read_batch(api, batch["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["counts"]["succeeded"] == 2 and done["counts"]["queued"] == 0
    listed = await api.client.get("/v1/jobs", params={"batch_id": batch["id"]}, headers=T1)
    assert {j["custom_id"] for j in listed.json()["data"]} == {"a", "b"}


async def test_ndjson_batch_takes_its_webhook_from_the_query(api: Api) -> None:
    body = ndjson(item("a"), "", item("b", temperature=0.2, metadata={"k": "v"}))
    response = await post_ndjson(api, body, webhook_url=HOOK)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["counts"]["total"] == 2
    assert api.store.batches[batch["id"]].webhook_url == HOOK
    second = next(j for j in api.store.jobs.values() if j.custom_id == "b")
    assert second.request.temperature == 0.2 and second.metadata == {"k": "v"}


@pytest.mark.parametrize(
    "content_type", ["application/x-ndjson; charset=utf-8", "application/jsonl"]
)
async def test_ndjson_media_type_variants(api: Api, content_type: str) -> None:
    headers = {**T1, "Content-Type": content_type}
    response = await api.client.post("/v1/batches", content=ndjson(item("a")), headers=headers)
    assert response.status_code == 202, response.text


async def test_ndjson_bad_line_is_422_naming_line_and_custom_id(api: Api) -> None:
    body = ndjson(item("a"), {"custom_id": "b", "messages": []}, item("c"))
    response = await post_ndjson(api, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "line 2" in error["message"] and "'b'" in error["message"]
    assert error["fields"][0]["field"] == "line 2.messages"
    assert_nothing_stored(api)


async def test_ndjson_line_that_is_not_json_is_422_naming_the_line(api: Api) -> None:
    response = await post_ndjson(api, ndjson(item("a"), item("b"), '{"custom_id": "c",'))
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "line 3"
    assert "line 3 is not valid JSON" in response.json()["error"]["message"]
    assert_nothing_stored(api)


async def test_json_bad_request_is_422_naming_index_and_custom_id(api: Api) -> None:
    body = {"requests": [item("a"), item("b", temperature=9)]}
    response = await post_json(api, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "requests.1" in error["message"] and "'b'" in error["message"]
    assert error["fields"][0]["field"] == "requests.1.temperature"
    assert_nothing_stored(api)


async def test_duplicate_custom_id_is_422(api: Api) -> None:
    json_body = {"requests": [item("a"), item("dup"), item("dup")]}
    response = await post_json(api, json_body)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "requests.2.custom_id"
    assert "'dup'" in response.json()["error"]["message"]

    response = await post_ndjson(api, ndjson(item("dup"), item("b"), item("dup")))
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "line 3" in message and "'dup'" in message and "line 1" in message
    assert_nothing_stored(api)


async def test_more_than_batch_max_requests_is_422() -> None:
    async with running_api(batch_max_requests=3) as api:
        four = [item(str(n)) for n in range(4)]
        response = await post_json(api, {"requests": four})
        assert response.status_code == 422
        assert "at most 3" in response.json()["error"]["message"]
        response = await post_ndjson(api, ndjson(*four))
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "requests"
        assert_nothing_stored(api)

        assert (await post_ndjson(api, ndjson(*four[:3]))).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"requests": []},
        {"requests": [item("a")], "unknown": 1},
        {"requests": [{**item("a"), "webhook_url": 7}]},
        {"requests": [item("a", metadata={"k": "v" * 513})]},
        {"requests": [item("x" * 65)]},
        {"requests": [item("")]},
        {"requests": "a"},
        [item("a")],
    ],
)
async def test_invalid_json_batches_are_422_and_store_nothing(api: Api, body: Any) -> None:
    response = await api.client.post("/v1/batches", json=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert_nothing_stored(api)


@pytest.mark.parametrize("body", [b"", b"\n\n", b" \r\n"])
async def test_empty_ndjson_is_422(api: Api, body: bytes) -> None:
    response = await post_ndjson(api, body)
    assert response.status_code == 422
    assert_nothing_stored(api)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
async def test_unsupported_content_type_is_415(api: Api, content_type: str | None) -> None:
    headers = {**T1, **({"Content-Type": content_type} if content_type else {})}
    response = await api.client.post("/v1/batches", content=ndjson(item("a")), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert_nothing_stored(api)


def _deep(depth: int) -> bytes:
    return b'{"custom_id": "a", "messages": ' + b"[" * depth + b"]" * depth + b"}"


ODD_BODIES = {
    "json-nested-too-deep": (JSON, b'{"requests": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "ndjson-nested-too-deep": (NDJSON, _deep(100_000)),
    "json-nested-deep": (JSON, b'{"requests": ' + b"[" * 900 + b"]" * 900 + b"}"),
    "ndjson-nested-deep": (NDJSON, _deep(900)),
    "json-open-braces": (JSON, b"{" * 50_000),
    "ndjson-open-brackets": (NDJSON, b"[" * 50_000),
    "json-null": (JSON, b"null"),
    "json-non-objects": (JSON, b'{"requests": [null, 1, "x"]}'),
    "ndjson-non-objects": (NDJSON, b"null\n[]\n1\n"),
    "ndjson-not-utf8": (NDJSON, b"\xff\xfe\x00garbage"),
    "lone-surrogate-custom-id": (
        NDJSON,
        b'{"custom_id": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
    ),
    "lone-surrogate-key": (
        NDJSON,
        b'{"custom_id": "a", "metadata": {"\\udfff": "x"}, "messages": []}',
    ),
    "nan": (
        NDJSON,
        b'{"custom_id": "a", "messages": [{"role": "user", "content": "hi"}], "x": NaN}',
    ),
    "numeric-custom-id": (
        JSON,
        b'{"requests": [{"custom_id": 5, "messages": [{"role": "user", "content": "hi"}]}]}',
    ),
}


@pytest.mark.parametrize(("headers", "body"), ODD_BODIES.values(), ids=ODD_BODIES.keys())
async def test_odd_bodies_are_refused_without_a_server_error(
    api: Api, headers: dict[str, str], body: bytes
) -> None:
    response = await api.client.post("/v1/batches", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]
    assert_nothing_stored(api)


async def test_batch_requires_a_key(api: Api) -> None:
    response = await api.client.post("/v1/batches", content=ndjson(item("a")))
    assert response.status_code == 401
    assert_nothing_stored(api)


# --- cache hits, results, cancel --------------------------------------------------------------


def prefill(api: Api, tenant: str, prompt: str) -> Completion:
    hit = Completion(content=f"cached {prompt}", provider="cache-test", model="m")
    request = ChatRequest(messages=[Message(role="user", content=prompt)])
    api.cache.entries[cache_key(tenant, request)] = hit
    return hit


async def test_cache_hits_inside_a_batch_are_answered_without_the_llm(api: Api) -> None:
    prefill(api, "t1", "p0")
    prefill(api, "t1", "p2")
    prefill(api, "t2", "p1")  # another tenant's cache entry is not a hit for t1
    body = ndjson(item("a", "p0"), item("b", "p1"), item("c", "p2"), item("d", "p2", cache=False))
    batch = (await post_ndjson(api, body)).json()
    assert batch["counts"]["total"] == 4
    assert batch["counts"]["succeeded"] == 2 and batch["counts"]["queued"] == 2
    assert api.llm.requests == []
    assert len(api.queue.pending) == 2

    lines = await results(api, batch["id"])
    assert [(x["custom_id"], x["status"]) for x in lines] == [
        ("a", "succeeded"), ("b", "queued"), ("c", "succeeded"), ("d", "queued")
    ]  # fmt: skip
    assert lines[0]["result"]["content"] == "cached p0"
    cached = (await api.client.get(f"/v1/jobs/{lines[0]['job_id']}", headers=T1)).json()
    assert cached["cached"] is True and cached["batch_id"] == batch["id"]

    await api.queue.drain()
    assert [r.messages[-1].content for r in api.llm.requests] == ["p1", "p2"]
    assert (await read_batch(api, batch["id"]))["status"] == "completed"


async def test_a_batch_of_cache_hits_completes_at_once_and_schedules_its_webhook(
    quiet_api: Api,
) -> None:
    api = quiet_api
    prefill(api, "t1", "p0")
    batch = (await post_json(api, {"requests": [item("a", "p0")], "webhook_url": HOOK})).json()
    assert batch["status"] == "completed" and batch["counts"]["succeeded"] == 1
    assert batch["webhook"]["state"] == "pending"
    assert api.llm.requests == [] and api.queue.pending == []


async def test_results_are_one_line_per_request_in_submission_order(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.batches.PAGE", 7)  # several pages
    ids = [f"id-{(n * 37) % 101:03d}" for n in range(30)]  # submission order is not sorted order
    batch = (await post_ndjson(api, ndjson(*(item(i) for i in ids)))).json()
    api.llm.errors = [PermanentLLMError("refused", provider="fake")]
    await api.queue.drain()

    lines = await results(api, batch["id"])
    assert [x["custom_id"] for x in lines] == ids
    assert len({x["job_id"] for x in lines}) == 30
    failed, *succeeded = lines
    assert failed["status"] == "failed" and failed["error"]["code"] == "llm_rejected"
    assert "result" not in failed
    for line in succeeded:
        assert set(line) == {"custom_id", "job_id", "status", "result"}
        assert line["status"] == "succeeded"
        assert line["result"]["content"] == f"prompt {line['custom_id']}"[::-1]
    done = await read_batch(api, batch["id"])
    assert done["status"] == "completed"
    assert done["counts"] | {"total": 0} == {
        "total": 0, "queued": 0, "running": 0, "succeeded": 29, "failed": 1, "cancelled": 0
    }  # fmt: skip


async def test_cancel_cancels_queued_jobs_and_schedules_batch_completed_once(
    quiet_api: Api,
) -> None:
    api = quiet_api
    body = {"requests": [item(str(n)) for n in range(5)], "webhook_url": HOOK}
    batch = (await post_json(api, body)).json()

    response = await api.client.post(f"/v1/batches/{batch['id']}/cancel", headers=T1)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"] is not None
    assert cancelled["counts"]["cancelled"] == 5 and cancelled["counts"]["queued"] == 0
    hook = cancelled["webhook"]
    assert hook["state"] == "pending" and hook["attempts"] == 0

    again = await api.client.post(f"/v1/batches/{batch['id']}/cancel", headers=T1)
    assert again.status_code == 409, again.text  # as for a job that has ended
    assert again.json()["error"]["message"] == "batch is cancelled and can no longer be cancelled"
    await api.queue.drain()  # the jobs' queue entries are acknowledged without running
    assert api.llm.requests == []
    final = await read_batch(api, batch["id"])
    assert final["webhook"]["id"] == hook["id"]  # scheduled once, never again
    assert {x["status"] for x in await results(api, batch["id"])} == {"cancelled"}


async def test_cancel_lets_a_running_job_finish_then_the_batch_ends_cancelled(
    quiet_api: Api,
) -> None:
    api = quiet_api
    body = {"requests": [item(str(n)) for n in range(3)], "webhook_url": HOOK}
    batch = (await post_json(api, body)).json()
    first = next(j for j in api.store.jobs.values() if j.custom_id == "0")
    now = utcnow()  # a worker holds the first job (its lease ends at once, so it can be re-run)
    assert await JobWrites(api.store).claim(
        first.id, lease_until=now - timedelta(seconds=1), now=now
    )

    cancelling = (await api.client.post(f"/v1/batches/{batch['id']}/cancel", headers=T1)).json()
    assert cancelling["status"] == "cancelling"
    assert cancelling["webhook"]["state"] == "pending" and cancelling["webhook"]["id"] is None
    assert cancelling["counts"]["running"] == 1 and cancelling["counts"]["cancelled"] == 2

    await api.app.state.services.executor.run(first.id)  # the running job finishes
    final = await read_batch(api, batch["id"])
    assert final["status"] == "cancelled"
    assert final["counts"]["succeeded"] == 1 and final["counts"]["cancelled"] == 2
    assert final["webhook"]["state"] == "pending"


async def test_unknown_batch_is_404(api: Api) -> None:
    for method, path in [
        ("GET", "/v1/batches/batch_nope"),
        ("GET", "/v1/batches/batch_nope/results"),
        ("POST", "/v1/batches/batch_nope/cancel"),
    ]:
        response = await api.client.request(method, path, headers=T1)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"


async def test_tenants_cannot_see_or_cancel_each_others_batches(api: Api) -> None:
    batch = (await post_ndjson(api, ndjson(item("a"), item("b")))).json()
    base = f"/v1/batches/{batch['id']}"
    for method, path in [("GET", base), ("GET", f"{base}/results"), ("POST", f"{base}/cancel")]:
        response = await api.client.request(method, path, headers=T2)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    listed = await api.client.get("/v1/jobs", params={"batch_id": batch["id"]}, headers=T2)
    assert listed.json()["data"] == []
    assert (await read_batch(api, batch["id"]))["status"] == "in_progress"  # not cancelled
    assert api.queue.pending and all(j.status is JobStatus.queued for j in api.store.jobs.values())


# --- webhook URLs are vetted at submit (SSRF) -------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://internal.example/hook",  # resolves to 10.0.0.1
    "http://localhost:8080/",
    "ftp://example.com/",
]


async def fake_resolve(host: str, port: int) -> list[str]:
    answers = {
        "internal.example": ["10.0.0.1"],
        "localhost": ["127.0.0.1"],
        "public.example": ["93.184.216.34"],
    }
    if host not in answers:
        raise OSError(f"no such host {host}")
    return answers[host]


@pytest.fixture
async def guarded_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.setattr("shared.webhooks.ssrf.system_resolve", fake_resolve)
    async with running_api(webhook_allow_private=False) as running:
        yield running


def assert_refused_naming_webhook_url(
    response: httpx.Response, fields: tuple[str, ...] = ("webhook_url",)
) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [f["field"] for f in error["fields"]] in [[field] for field in fields]
    assert "webhook_url" in error["message"]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_refused_webhook_urls_are_422_for_jobs_and_batches(
    guarded_api: Api, url: str
) -> None:
    api = guarded_api
    assert_refused_naming_webhook_url(await api.submit(chat(webhook_url=url)))
    body = {"requests": [item("a")], "webhook_url": url}
    assert_refused_naming_webhook_url(await post_json(api, body))
    assert_refused_naming_webhook_url(await post_ndjson(api, ndjson(item("a")), webhook_url=url))
    per_request = {"requests": [item("a"), {**item("b"), "webhook_url": url}]}
    # a URL of the wrong shape is refused with the item's path, an internal one when resolved
    either = ("webhook_url", "requests.1.webhook_url")
    assert_refused_naming_webhook_url(await post_json(api, per_request), either)
    assert_nothing_stored(api)


async def test_a_refused_webhook_url_does_not_reveal_the_address_its_host_resolves_to(
    guarded_api: Api,
) -> None:
    url = "http://internal.example/hook"  # resolves to 10.0.0.1
    for response in (
        await guarded_api.submit(chat(webhook_url=url)),
        await post_json(guarded_api, {"requests": [item("a")], "webhook_url": url}),
    ):
        assert_refused_naming_webhook_url(response)
        assert "not allowed" in response.json()["error"]["message"]
        assert "10.0.0.1" not in response.text
        assert "private" not in response.text


async def test_a_public_webhook_url_is_accepted(guarded_api: Api) -> None:
    url = "https://public.example/hook"
    assert (await guarded_api.submit(chat(webhook_url=url))).status_code == 202
    body = {"requests": [item("a")], "webhook_url": url}
    assert (await post_json(guarded_api, body)).status_code == 202


# --- signing secret ---------------------------------------------------------------------------


async def test_webhook_secret_is_per_tenant_and_verifies_signatures(api: Api) -> None:
    first = await api.client.get("/v1/webhook-secret", headers=T1)
    second = await api.client.get("/v1/webhook-secret", headers=T2)
    assert first.status_code == second.status_code == 200
    s1, s2 = first.json()["secret"], second.json()["secret"]
    assert s1.startswith("whsec_") and s2.startswith("whsec_") and s1 != s2
    assert s1 == tenant_secret("test-master-secret", "t1")
    assert s1 == (await api.client.get("/v1/webhook-secret", headers=T1)).json()["secret"]

    timestamp = utcnow()
    signature = Webhook(s1).sign("msg_1", timestamp, '{"a":1}')
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
    assert Webhook(s1).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(Exception, match="signature"):
        Webhook(s2).verify('{"a":1}', headers)


async def test_webhook_secret_requires_a_key(api: Api) -> None:
    assert (await api.client.get("/v1/webhook-secret")).status_code == 401


async def test_queue_refusal_is_503_and_the_batch_is_not_left_accepted(quiet_api: Api) -> None:
    api = quiet_api
    prefill(api, "t1", "p0")
    api.queue.refuse = True
    body = {"requests": [item("a", "p0"), item("b"), item("c")], "webhook_url": HOOK}
    response = await post_json(api, body)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    [batch] = api.store.batches.values()
    assert batch.status == "completed" and batch.completed_at is not None
    assert batch.counts.failed == 2 and batch.counts.succeeded == 1 and batch.counts.queued == 0
    failed = [j for j in api.store.jobs.values() if j.status is JobStatus.failed]
    assert {j.error.code for j in failed if j.error} == {"queue_unavailable"}
    assert batch.webhook is None  # the caller was told 503: no batch.completed for it


async def test_cancelling_the_last_open_job_of_a_batch_completes_the_batch(api: Api) -> None:
    batch = (await post_ndjson(api, ndjson(item("a"), item("b")))).json()
    first, second = sorted(api.store.jobs.values(), key=lambda j: j.created_at)
    await api.app.state.services.executor.run(first.id)
    response = await api.client.post(f"/v1/jobs/{second.id}/cancel", headers=T1)
    assert response.status_code == 200
    done = await read_batch(api, batch["id"])
    assert done["counts"]["succeeded"] == 1 and done["counts"]["cancelled"] == 1
    assert done["status"] == "completed"


@pytest.mark.parametrize("where", ["request", "batch"])
async def test_batch_metadata_is_bounded_like_a_jobs(api: Api, where: str) -> None:
    many = {f"k{n}": "v" for n in range(17)}
    assert (await api.submit(chat(metadata=many))).status_code == 422
    if where == "request":
        body: dict[str, Any] = {"requests": [item("a", metadata=many)]}
    else:
        body = {"requests": [item("a")], "metadata": many}
    response = await post_json(api, body)
    assert response.status_code == 422, response.text


async def test_a_batch_request_may_carry_its_own_webhook(api: Api) -> None:
    body = {"requests": [{**item("a"), "webhook_url": HOOK}, item("b")]}
    assert (await post_json(api, body)).status_code == 202
    await api.queue.drain()
    jobs = {j.custom_id: j for j in api.store.jobs.values()}
    assert jobs["a"].webhook_url == HOOK and jobs["a"].webhook is not None
    assert jobs["a"].webhook.state == "pending"
    assert jobs["b"].webhook is None


# Idempotency-Key on batches


async def test_a_batch_sent_twice_with_one_idempotency_key_is_one_batch(api: Api) -> None:
    body = ndjson(item("a"), item("b"))
    keyed = {**NDJSON, "Idempotency-Key": "upload-7"}
    first = await api.client.post("/v1/batches", content=body, headers=keyed)
    again = await api.client.post("/v1/batches", content=body, headers=keyed)
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(api.store.batches) == 1 and len(api.store.jobs) == 2
    assert len(api.queue.pending) == 2  # its jobs were enqueued once


async def test_the_same_key_with_another_body_is_a_conflict(api: Api) -> None:
    keyed = {**JSON, "Idempotency-Key": "upload-8"}
    first = await post_json(api, {"requests": [item("a")]}, keyed)
    other = await post_json(api, {"requests": [item("a", "another prompt")]}, keyed)
    assert first.status_code == 202
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    assert len(api.store.batches) == 1


async def test_an_idempotency_key_is_per_tenant(api: Api) -> None:
    body = ndjson(item("a"))
    mine = await api.client.post(
        "/v1/batches", content=body, headers={**NDJSON, "Idempotency-Key": "k"}
    )
    theirs = await api.client.post(
        "/v1/batches",
        content=body,
        headers={"Content-Type": "application/x-ndjson", **T2, "Idempotency-Key": "k"},
    )
    assert theirs.status_code == 202 and theirs.json()["id"] != mine.json()["id"]


async def test_cancelling_a_completed_batch_is_a_conflict_as_for_a_finished_job(api: Api) -> None:
    batch = (await post_json(api, {"requests": [item("0")]})).json()
    await api.queue.drain()
    assert (await read_batch(api, batch["id"]))["status"] == "completed"

    answer = await api.client.post(f"/v1/batches/{batch['id']}/cancel", headers=T1)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "conflict"
    assert (await read_batch(api, batch["id"]))["status"] == "completed"
