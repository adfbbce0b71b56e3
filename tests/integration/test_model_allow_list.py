"""Issue 13, item 1: a tenant must not steer the provider's URL through `model`.

The whole service runs in process (SQLite, the in-process queue, the Gemini adapter) against the
stub LLM server, which records the path and query of every request it receives, routed or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from shared.factory import ServiceFactory
from tests.conftest import make_settings
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer k1"}
INJECTIONS = [
    "gemini/../../../v1/evil",
    "gemini-x?key=attacker#",
    "gemini-2.5-flash/../../v1/evil",
    "gemini-2.5-flash:streamGenerateContent?alt=sse&key=x",
    "gemini%2F..%2Fevil",
    "gemini-2.5-flash#",
    "openai/../../evil",
    "unknown-model",
]


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], **extra}


@pytest.fixture
async def client(tmp_path: Path, llm_stub: LLMStub) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        api_keys="t1:k1",
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="stub-key",
        gemini_base_url=llm_stub.gemini_base_url,
        gemini_model="gemini-2.5-flash",
        model_aliases="fast=gemini-2.0-flash-lite",
        llm_timeout_s=5,
    )
    app = create_app(ServiceFactory(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    answer = await client.get(f"/v1/jobs/{job_id}", params={"wait": 10}, headers=AUTH)
    job: dict[str, Any] = answer.json()
    assert job["status"] == "succeeded", job
    return job


@pytest.mark.parametrize("model", INJECTIONS)
async def test_a_model_not_configured_is_refused_naming_the_field(
    client: httpx.AsyncClient, llm_stub: LLMStub, model: str
) -> None:
    answer = await client.post("/v1/jobs", json=chat("x", model=model), headers=AUTH)

    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"]["code"] == "invalid_request"
    assert [f["field"] for f in body["error"]["fields"]] == ["model"]
    assert "gemini-2.5-flash" in body["error"]["message"]  # says what is served
    await asyncio.sleep(0.1)  # give a wrongly queued job the time to reach the stub
    assert llm_stub.seen_targets() == []


async def test_a_batch_line_with_a_model_not_configured_is_refused(
    client: httpx.AsyncClient, llm_stub: LLMStub
) -> None:
    requests = [
        {"custom_id": "good", **chat("a")},
        {"custom_id": "bad", **chat("b", model="gemini/../../../v1/evil")},
    ]
    answer = await client.post("/v1/batches", json={"requests": requests}, headers=AUTH)

    assert answer.status_code == 422, answer.text
    assert "'bad'" in answer.json()["error"]["message"]
    listed = await client.get("/v1/jobs", headers=AUTH)
    assert listed.json()["data"] == []  # nothing of the batch was stored
    assert llm_stub.seen_targets() == []


async def test_only_configured_models_reach_the_provider_and_aliases_resolve(
    client: httpx.AsyncClient, llm_stub: LLMStub
) -> None:
    for prompt, model in [("one", None), ("two", "gemini-2.5-flash"), ("three", "fast")]:
        body = chat(prompt) if model is None else chat(prompt, model=model)
        submitted = await client.post("/v1/jobs", json=body, headers=AUTH)
        assert submitted.status_code == 202, submitted.text
        await finished(client, submitted.json()["id"])

    assert sorted(llm_stub.seen_targets()) == [  # single jobs are streamed (JobStreams)
        "/v1beta/models/gemini-2.0-flash-lite:streamGenerateContent?alt=sse",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    ]
