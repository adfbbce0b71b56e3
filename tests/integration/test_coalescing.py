"""Request coalescing over HTTP (embedded layout, the real Gemini adapter calling the stub LLM
server, which counts calls): identical requests of a tenant in flight make one LLM call, yet
each is a job of its own that ends with the answer, its own webhook and its usage row."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import make_settings
from tests.serving import ServedApi
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

KEYS = {"t1": "key-one", "t2": "key-two"}
LLM_S = 1.5  # each stub call: longer than the wait, and than 50 requests take to arrive
WAIT_S = 1.0  # CHAT_COMPLETIONS_WAIT_S: shorter than one LLM call


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, llm_stub_server: LLMStub) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("coalescing")) / "chatjobs.db"
    settings = make_settings(
        api_keys=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        sqlite_path=str(db),
        gemini_api_key="test",
        gemini_base_url=llm_stub_server.gemini_base_url,
        chat_completions_wait_s=WAIT_S,
        llm_timeout_s=10,
    )
    with ServedApi(settings) as api:
        yield api.url


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


async def submit_all(url: str, bodies: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """POST every (tenant, body) at once, then wait for each job to end."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        posted = await asyncio.gather(
            *(http.post("/v1/jobs", json=body, headers=auth(t)) for t, body in bodies)
        )
        assert {r.status_code for r in posted} == {202}, [r.text for r in posted][:3]
        ended = await asyncio.gather(
            *(
                http.get(f"/v1/jobs/{r.json()['id']}?wait=20", headers=auth(t))
                for r, (t, _) in zip(posted, bodies, strict=True)
            )
        )
    return [r.json() for r in ended]


def deliveries(receiver: WebhookReceiver, count: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while len(receiver.webhook_ids) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def usage(url: str, tenant: str) -> dict[str, Any]:
    rows = httpx.get(f"{url}/v1/usage?group_by=provider", headers=auth(tenant)).json()["data"]
    return {row["group"]: row for row in rows}


async def test_fifty_identical_requests_make_one_llm_call(
    served: str, llm_stub: LLMStub, receiver: WebhookReceiver
) -> None:
    llm_stub.set("gemini", "stall", seconds=LLM_S)
    body = {"messages": [{"role": "user", "content": "fifty of me"}], "webhook_url": receiver.url}

    jobs = await submit_all(served, [("t1", body)] * 50)

    assert llm_stub.stats()["gemini"] == 1
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert len({job["id"] for job in jobs}) == 50
    assert {job["result"]["content"] for job in jobs} == {"gemini says: fifty of me"}
    leaders = [job for job in jobs if not job["coalesced"] and not job["cached"]]
    assert len(leaders) == 1 and leaders[0]["attempts"] == 1
    coalesced = [job for job in jobs if job["coalesced"]]
    assert len(coalesced) >= 40  # the rest, claimed after the answer was cached, hit the cache
    assert {job["attempts"] for job in coalesced} == {0}
    row = usage(served, "t1")["gemini"]
    assert (row["requests"], row["llm_calls"], row["coalesced"]) == (
        len(coalesced) + 1,
        1,
        len(coalesced),
    )
    assert row["input_tokens"] == leaders[0]["result"]["usage"]["input_tokens"]  # once
    await asyncio.to_thread(deliveries, receiver, 50)
    delivered = {d.payload["data"]["id"] for d in receiver.received()}
    assert delivered >= {job["id"] for job in jobs}  # each job its own webhook


async def test_two_tenants_identical_requests_make_two_calls(
    served: str, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "stall", seconds=LLM_S)
    body = {"messages": [{"role": "user", "content": "one per tenant"}]}

    jobs = await submit_all(served, [("t1", body), ("t2", body)] * 5)

    assert llm_stub.stats()["gemini"] == 2
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert [job["coalesced"] for job in jobs].count(False) == 2


def test_a_retry_after_the_wait_ran_out_joins_the_job_in_flight(
    served: str, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "stall", seconds=LLM_S)
    sdk = openai.OpenAI(base_url=f"{served}/openai/v1", api_key=KEYS["t1"], max_retries=0)
    messages: Any = [{"role": "user", "content": "retry me"}]
    with pytest.raises(openai.APIStatusError) as timed_out:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=messages)
    assert timed_out.value.status_code == 408
    first = timed_out.value.response.headers["x-chatjobs-job-id"]

    retried = sdk.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=messages
    )

    answer = retried.parse()
    assert answer.choices[0].message.content == "gemini says: retry me"
    assert llm_stub.stats()["gemini"] == 1  # the client never paid twice
    job = httpx.get(f"{served}/v1/jobs/{answer.id}", headers=auth("t1")).json()
    assert answer.id != first and job["coalesced"] is True


def test_a_batch_asks_the_llm_once_per_distinct_request(served: str, llm_stub: LLMStub) -> None:
    llm_stub.set("gemini", "stall", seconds=0.5)
    same = {"messages": [{"role": "user", "content": "in a batch"}]}
    other = {"messages": [{"role": "user", "content": "another one"}]}
    requests: list[dict[str, Any]] = [{"custom_id": f"s{n}", **same} for n in range(8)]
    requests += [{"custom_id": f"o{n}", **other} for n in range(4)]
    posted = httpx.post(f"{served}/v1/batches", json={"requests": requests}, headers=auth("t2"))
    assert posted.status_code == 202, posted.text

    batch = wait_for_batch(served, posted.json()["id"])

    assert batch["counts"]["succeeded"] == 12
    assert llm_stub.stats()["gemini"] == 2
    lines = httpx.get(f"{served}/v1/batches/{batch['id']}/results", headers=auth("t2"))
    results = [json.loads(line) for line in lines.text.splitlines()]
    assert {r["custom_id"]: r["result"]["content"] for r in results} == {
        r["custom_id"]: f"gemini says: {r['messages'][0]['content']}" for r in requests
    }


def wait_for_batch(url: str, batch_id: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        batch: dict[str, Any] = httpx.get(f"{url}/v1/batches/{batch_id}", headers=auth("t2")).json()
        if batch["status"] == "completed" or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)
