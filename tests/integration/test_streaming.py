"""Streaming through the queue in the embedded layout (in-process workers and JobStreams): the
`openai` SDK and an SSE client against the API over HTTP, the stub LLM server streaming slowly
behind the real Gemini and OpenRouter adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import make_settings
from tests.integration import streaming_checks as check
from tests.serving import ServedApi
from tests.sse import read_events
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration
KEYS = {"t1": check.KEY, "t2": "key-two"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, llm_stub_server: LLMStub) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("streaming")) / "chatjobs.db"
    settings = make_settings(
        api_keys=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        sqlite_path=str(db),
        gemini_api_key="test",
        gemini_base_url=llm_stub_server.gemini_base_url,
        openrouter_api_key="test",
        openrouter_base_url=llm_stub_server.openrouter_base_url,
        llm_timeout_s=10,
        chat_completions_wait_s=10,
        job_retry_base_s=0.05,
    )
    with ServedApi(settings) as api:
        yield api.url


def test_tokens_reach_the_sdk_as_the_provider_writes_them(served: str, llm_stub: LLMStub) -> None:
    check.tokens_arrive_as_written(served, llm_stub)


def test_a_dropped_event_stream_resumes_after_its_last_event_id(
    served: str, llm_stub: LLMStub
) -> None:
    check.a_dropped_connection_resumes_without_gaps_or_repeats(served, llm_stub)


def test_another_tenants_job_is_not_found(served: str, llm_stub: LLMStub) -> None:
    last = check.only_the_owner_follows_a_job(served, KEYS["t2"])
    assert last.data["status"] == "succeeded"


def test_a_fallback_midway_never_mixes_two_providers_text(served: str, llm_stub: LLMStub) -> None:
    """Gemini breaks off after some text; OpenRouter then answers the job. The client, who was
    sent Gemini's text, gets an error naming the job (never OpenRouter's text after Gemini's);
    the job succeeds with OpenRouter's whole answer."""
    llm_stub.set("gemini", "cut", chunk_delay_s=0.1)
    with check.client(served) as sdk, pytest.raises(openai.APIError) as interrupted:
        stream = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
        )
        job_id, text = stream.headers["x-chatjobs-job-id"], ""
        for chunk in stream.parse():
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text.startswith("gemini says: ") and "openrouter" not in text
    assert job_id in interrupted.value.message and "/v1/jobs/" in interrupted.value.message
    assert isinstance(interrupted.value.body, dict)
    assert interrupted.value.body["code"] == "stream_interrupted"
    with check.native(served) as http:
        job = http.get(f"/v1/jobs/{job_id}?wait=10").json()
    assert job["status"] == "succeeded"
    assert job["result"]["content"] == "openrouter says: one two three four five six"


def test_a_fallback_before_any_text_streams_the_fallbacks_answer(
    served: str, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "fail", status=503)
    stream = check.client(served).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "fall back"}], stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "openrouter says: fall back" and len(pieces) > 1


def test_a_cached_answer_comes_whole_at_once(served: str, llm_stub: LLMStub) -> None:
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "cache this"}]
    with check.client(served) as sdk, check.native(served) as http:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=ask)
        again = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=ask, stream=True
        )
        assert again.headers["x-chatjobs-cached"] == "true"
        pieces = [c.choices[0].delta.content for c in again.parse() if c.choices]
        job_id = again.headers["x-chatjobs-job-id"]
        (only,) = read_events(http, f"/v1/jobs/{job_id}/events")
    assert [p for p in pieces if p] == ["gemini says: cache this"]
    assert (only.event, only.id, only.data["cached"]) == ("job", "end", True)


def test_a_last_event_id_that_is_not_one_is_refused_by_name(served: str) -> None:
    with check.native(served) as http:
        job = http.post("/v1/jobs", json={"messages": [{"role": "user", "content": "ids"}]})
        events_url = f"/v1/jobs/{job.json()['id']}/events"
        refused = http.get(events_url, headers={"Last-Event-ID": "soon"})
    assert refused.status_code == 422
    assert "Last-Event-ID" in refused.json()["error"]["message"]


def test_a_coalesced_follower_streams_its_leaders_text(served: str, llm_stub: LLMStub) -> None:
    check.identical_streams_share_one_call_and_both_stream(served, llm_stub)


async def test_plain_cached_and_async_streamed_completions(served: str, llm_stub: LLMStub) -> None:
    await check.plain_cached_and_async_streamed_with_usage(served, llm_stub)
