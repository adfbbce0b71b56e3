"""The OpenAI dialect's chat completions and models, driven only through the `openai` SDK
against the API over HTTP (embedded layout; the real Gemini and OpenRouter adapters call the
stub LLM server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from tests.conftest import make_settings
from tests.serving import ServedApi
from tests.stubs.fixtures import LLMStub

KEYS = {"t1": "key-one", "t2": "key-two"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, llm_stub_server: LLMStub) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("openai")) / "chatjobs.db"
    settings = make_settings(
        api_keys=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        sqlite_path=str(db),
        gemini_api_key="test",
        gemini_base_url=llm_stub_server.gemini_base_url,
        openrouter_api_key="test",
        openrouter_base_url=llm_stub_server.openrouter_base_url,
        chat_completions_wait_s=3,
        llm_timeout_s=10,
    )
    with ServedApi(settings) as api:
        yield api.url


def client(url: str, key: str = KEYS["t1"]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)


def ask(prompt: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": prompt}]


def test_a_completion_is_a_job_answered_in_openais_shape(served: str, llm_stub: LLMStub) -> None:
    raw = client(served).chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "plain one"}]
    )
    answer = raw.parse()
    assert isinstance(answer, ChatCompletion)
    assert answer.choices[0].message.content == "gemini says: plain one"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    assert raw.headers["x-chatjobs-job-id"] == answer.id
    assert raw.headers["x-chatjobs-cached"] == "false"
    job = httpx.get(f"{served}/v1/jobs/{answer.id}", headers={"Authorization": "Bearer key-one"})
    assert job.json()["status"] == "succeeded"
    assert job.json()["result"]["content"] == answer.choices[0].message.content


def test_the_same_request_again_is_answered_from_the_cache(served: str, llm_stub: LLMStub) -> None:
    sdk = client(served)
    first = sdk.chat.completions.create(model="gemini-2.5-flash", messages=ask("cache me"))
    calls = llm_stub.stats()["gemini"]
    again = sdk.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=ask("cache me")
    )
    assert again.headers["x-chatjobs-cached"] == "true"
    assert again.parse().choices[0].message.content == first.choices[0].message.content
    assert llm_stub.stats()["gemini"] == calls


def test_text_parts_developer_role_and_options_reach_the_provider(
    served: str, llm_stub: LLMStub
) -> None:
    answer = client(served).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "parts"}]},
        ],
        temperature=0.3,
        max_completion_tokens=64,
        stop=["\n\n"],
        n=1,
    )
    assert answer.choices[0].message.content == "gemini says: parts"
    options = llm_stub.state.requests["gemini"][-1]["options"]
    assert options["temperature"] == 0.3 and options["max_tokens"] == 64


def test_models_lists_what_a_request_may_name(served: str) -> None:
    names = [model.id for model in client(served).models.list()]
    assert names[0] == "gemini-2.5-flash" and len(names) >= 2
    assert client(served).models.retrieve(names[1]).id == names[1]


def test_streaming_ends_with_the_whole_answer_and_usage(served: str, llm_stub: LLMStub) -> None:
    stream = client(served).chat.completions.create(
        model="gemini-2.5-flash",
        messages=ask("stream me"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "gemini says: stream me"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_the_async_client_gets_the_same_answer(served: str, llm_stub: LLMStub) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{served}/openai/v1", api_key=KEYS["t2"], max_retries=0)
    answer = await sdk.chat.completions.create(model="gemini-2.5-flash", messages=ask("async"))
    assert answer.choices[0].message.content == "gemini says: async"
    await sdk.close()


def test_the_sdks_exceptions_for_bad_key_model_and_body(served: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(served, key="wrong").models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client(served).chat.completions.create(model="gpt-nope", messages=ask("x"))
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client(served).chat.completions.create(model="gemini-2.5-flash", messages=[])
    assert bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as too_hot:
        client(served).chat.completions.create(
            model="gemini-2.5-flash", messages=ask("x"), temperature=7
        )
    assert too_hot.value.param == "temperature"


def test_fields_it_cannot_honour_are_refused_by_name(served: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(served).chat.completions.create(
            model="gemini-2.5-flash",
            messages=ask("x"),
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert refused.value.param == "tools" and "tools" in refused.value.message
    with pytest.raises(openai.BadRequestError) as many:
        client(served).chat.completions.create(model="gemini-2.5-flash", messages=ask("x"), n=2)
    assert many.value.param == "n"
    fine = client(served).chat.completions.create(
        model="gemini-2.5-flash", messages=ask("neutral"), presence_penalty=0, store=False
    )
    assert fine.choices[0].message.content == "gemini says: neutral"


def test_a_wait_that_runs_out_names_the_job_which_keeps_running(
    served: str, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "stall", seconds=4.5)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as timed_out:
        client(served).chat.completions.create(model="gemini-2.5-flash", messages=ask("slow"))
    assert timed_out.value.status_code == 408 and timed_out.value.code == "wait_timeout"
    assert time.monotonic() - started < 4.5
    job_id = timed_out.value.response.headers["x-chatjobs-job-id"]
    assert job_id in timed_out.value.message
    job = httpx.get(
        f"{served}/v1/jobs/{job_id}?wait=10", headers={"Authorization": "Bearer key-one"}
    )
    assert job.json()["status"] == "succeeded"


def test_over_the_rate_limit_the_sdk_raises_rate_limit_error(
    tmp_path: Path, llm_stub: LLMStub
) -> None:
    settings = make_settings(
        api_keys="t1:key-one",
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="test",
        gemini_base_url=llm_stub.gemini_base_url,
        rate_limit="2/minute",
    )
    with ServedApi(settings) as api:
        sdk = client(api.url)
        for n in range(2):
            sdk.chat.completions.create(model="gemini-2.5-flash", messages=ask(f"within {n}"))
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(model="gemini-2.5-flash", messages=ask("over"))
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    assert limited.value.code == "rate_limited"
    assert limited.value.body is not None
