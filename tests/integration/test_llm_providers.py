"""The providers (Gemini through the google-genai SDK, OpenRouter over aiohttp) against the stub
LLM server on loopback, whole answers and streamed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from shared.adapters.llm.base import HttpProvider
from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.gemini import GeminiConnection, GeminiProvider
from shared.adapters.llm.openrouter import OpenRouterProvider
from shared.errors import PermanentLLMError, TransientLLMError
from shared.job_stream import Delta
from shared.models import ChatRequest, Message
from shared.ports import LLMProvider
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5


def gemini_at(url: str, timeout_s: float = TIMEOUT_S, connections: int = 16) -> GeminiProvider:
    connection = GeminiConnection(api_key="g-key", base_url=url)
    return GeminiProvider(connection, "gemini-2.5-flash", timeout_s, connections=connections)


def openrouter_at(
    url: str, timeout_s: float = TIMEOUT_S, connections: int = 16
) -> OpenRouterProvider:
    model = "openai/gpt-4o-mini"
    return OpenRouterProvider("o-key", model, url, timeout_s, connections=connections)


def ask(text: str = "hello stub", **options: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": text}], **options})


@pytest.fixture
async def gemini(llm_stub: LLMStub) -> AsyncIterator[GeminiProvider]:
    provider = gemini_at(llm_stub.gemini_base_url)
    yield provider
    await provider.close()


@pytest.fixture
async def openrouter(llm_stub: LLMStub) -> AsyncIterator[OpenRouterProvider]:
    provider = openrouter_at(llm_stub.openrouter_base_url)
    yield provider
    await provider.close()


@pytest.fixture(params=["gemini", "openrouter"])
def provider(
    request: pytest.FixtureRequest, gemini: GeminiProvider, openrouter: OpenRouterProvider
) -> HttpProvider[Any]:
    chosen: HttpProvider[Any] = gemini if request.param == "gemini" else openrouter
    return chosen


def at(provider: HttpProvider[Any], llm_stub: LLMStub, **options: Any) -> HttpProvider[Any]:
    """Another provider of the same vendor on the stub, e.g. with a longer timeout."""
    if provider.name == "gemini":
        return gemini_at(llm_stub.gemini_base_url, **options)
    return openrouter_at(llm_stub.openrouter_base_url, **options)


async def test_gemini_success(gemini: GeminiProvider, llm_stub: LLMStub) -> None:
    completion = await gemini.complete(ask("what is up", temperature=0.2, max_tokens=50))

    assert completion.content == "gemini says: what is up"
    assert (completion.provider, completion.model) == ("gemini", "gemini-2.5-flash")
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens == 5
    seen = llm_stub.last_request("gemini")
    assert seen is not None
    assert seen["path"].endswith("/models/gemini-2.5-flash:generateContent")
    assert seen["headers"]["x-goog-api-key"] == "g-key"
    assert seen["body"]["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}


async def test_openrouter_success(openrouter: OpenRouterProvider, llm_stub: LLMStub) -> None:
    completion = await openrouter.complete(ask("what is up", temperature=0.2, max_tokens=50))

    assert completion.content == "openrouter says: what is up"
    assert (completion.provider, completion.model) == ("openrouter", "openai/gpt-4o-mini")
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens == 5
    seen = llm_stub.last_request("openrouter")
    assert seen is not None
    assert seen["headers"]["authorization"] == "Bearer o-key"
    assert seen["body"]["temperature"] == 0.2 and seen["body"]["max_tokens"] == 50


async def test_request_model_is_used_only_when_it_fits_the_provider(
    gemini: GeminiProvider,
    openrouter: OpenRouterProvider,
) -> None:
    assert (await gemini.complete(ask(model="gemini-2.0-pro"))).model == "gemini-2.0-pro"
    assert (await gemini.complete(ask(model="anthropic/claude"))).model == "gemini-2.5-flash"
    assert (await openrouter.complete(ask(model="anthropic/claude"))).model == "anthropic/claude"
    assert (await openrouter.complete(ask(model="gemini-2.0-pro"))).model == "openai/gpt-4o-mini"


async def test_gemini_maps_system_and_assistant_messages(
    gemini: GeminiProvider,
    llm_stub: LLMStub,
) -> None:
    messages = [
        Message(role="system", content="be terse"),
        Message(role="user", content="hi"),
        Message(role="assistant", content="hello"),
        Message(role="user", content="again"),
    ]
    completion = await gemini.complete(ChatRequest(messages=messages))

    assert completion.content == "gemini says: again"
    body = (llm_stub.last_request("gemini") or {})["body"]
    assert body["systemInstruction"]["parts"] == [{"text": "be terse"}]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
GENERATION: dict[str, Any] = {
    "temperature": 0.3,
    "max_tokens": 40,
    "top_p": 0.9,
    "stop": ["END", "STOP"],
    "seed": 42,
    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
}


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
async def test_both_providers_send_every_generation_parameter(
    provider: HttpProvider[Any], llm_stub: LLMStub, streaming: bool
) -> None:
    request = ask("what is up", **GENERATION)
    if streaming:
        content = "".join(d.text for d in await streamed(provider, request))
    else:
        content = (await provider.complete(request)).content

    seen = (llm_stub.last_request(provider.name) or {})["options"]
    expected = {
        "temperature": 0.3,
        "max_tokens": 40,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "seed": 42,
        "json": True,
        "schema": SCHEMA,
    }
    assert seen == expected
    assert json.loads(content) == {"answer": f"{provider.name} says: what is up"}


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"response_format": {"type": "json_object"}}, {"json": True, "schema": None}),
        ({"response_format": {"type": "text"}}, {"json": False}),
        ({}, {"top_p": None, "stop": None, "seed": None, "json": False, "schema": None}),
    ],
    ids=["one stop string", "json_object", "text", "none given"],
)
async def test_generation_parameters_each_reach_both_providers(
    provider: HttpProvider[Any], llm_stub: LLMStub, options: dict[str, Any], sent: dict[str, Any]
) -> None:
    await provider.complete(ask(**options))

    seen = (llm_stub.last_request(provider.name) or {})["options"]
    assert {name: seen[name] for name in sent} == sent


async def test_openrouter_gets_openai_shaped_fields(
    openrouter: OpenRouterProvider, llm_stub: LLMStub
) -> None:
    await openrouter.complete(ask(**GENERATION))

    body = (llm_stub.last_request("openrouter") or {})["body"]
    assert (body["top_p"], body["stop"], body["seed"]) == (0.9, ["END", "STOP"], 42)
    assert body["response_format"] == GENERATION["response_format"]


async def test_nothing_unset_is_sent(
    gemini: GeminiProvider, openrouter: OpenRouterProvider, llm_stub: LLMStub
) -> None:
    await gemini.complete(ask())
    await openrouter.complete(ask())

    assert "generationConfig" not in (llm_stub.last_request("gemini") or {})["body"]
    body = (llm_stub.last_request("openrouter") or {})["body"]
    assert set(body) == {"model", "messages"}


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientLLMError), (503, TransientLLMError), (400, PermanentLLMError),
     (401, PermanentLLMError), (404, PermanentLLMError)],
)  # fmt: skip
async def test_http_status_maps_to_typed_error(
    provider: LLMProvider,
    llm_stub: LLMStub,
    status: int,
    error: type[Exception],
) -> None:
    llm_stub.set(provider.name, "fail", status=status)
    with pytest.raises(error, match=f"HTTP {status}") as caught:
        await provider.complete(ask())
    assert getattr(caught.value, "status_code", None) == status
    assert llm_stub.stats()[provider.name] == 1  # the client did not retry on its own


async def test_rate_limit_is_transient(provider: LLMProvider, llm_stub: LLMStub) -> None:
    llm_stub.set(provider.name, "rate_limit", retry_after=7)
    with pytest.raises(TransientLLMError, match="HTTP 429") as raised:
        await provider.complete(ask())
    assert raised.value.retry_after_s == 7.0  # the provider's Retry-After reaches the retry logic
    assert llm_stub.stats()[provider.name] == 1


async def test_stall_past_the_timeout_is_transient(
    provider: LLMProvider,
    llm_stub: LLMStub,
) -> None:
    llm_stub.set(provider.name, "stall", seconds=2)
    started = time.monotonic()
    with pytest.raises(TransientLLMError, match="timed out"):
        await provider.complete(ask())
    assert time.monotonic() - started < 1.5


async def test_refused_connection_is_transient(provider: LLMProvider) -> None:
    provider_url = "http://127.0.0.1:9"  # discard port: nothing listens there
    dead: LLMProvider = (
        gemini_at(provider_url) if provider.name == "gemini" else openrouter_at(provider_url)
    )
    with pytest.raises(TransientLLMError):
        await dead.complete(ask())
    await dead.close()


async def test_malformed_body_is_transient(provider: LLMProvider, llm_stub: LLMStub) -> None:
    llm_stub.set(provider.name, "garbage")
    with pytest.raises(TransientLLMError):
        await provider.complete(ask())


@pytest.mark.parametrize("mode", ["block", "safety"])
async def test_safety_refusal_is_permanent(
    provider: LLMProvider,
    llm_stub: LLMStub,
    mode: str,
) -> None:
    llm_stub.set(provider.name, mode)
    with pytest.raises(PermanentLLMError, match=r"blocked|withheld"):
        await provider.complete(ask())


async def test_fallback_answers_from_openrouter_when_gemini_fails(
    gemini: GeminiProvider,
    openrouter: OpenRouterProvider,
    llm_stub: LLMStub,
) -> None:
    llm = FallbackLLM(gemini, openrouter, CircuitBreaker(2, cooldown_s=60))
    llm_stub.set("gemini", "fail", status=500)

    completions = [await llm.complete(ask(f"question {n}")) for n in range(3)]

    assert [c.content for c in completions] == [f"openrouter says: question {n}" for n in range(3)]
    assert llm_stub.stats() == {"gemini": 2, "openrouter": 3}  # the breaker opened after two


async def test_fallback_names_both_errors_when_both_fail(
    gemini: GeminiProvider,
    openrouter: OpenRouterProvider,
    llm_stub: LLMStub,
) -> None:
    llm = FallbackLLM(gemini, openrouter, CircuitBreaker(5, cooldown_s=60))
    llm_stub.set("gemini", "fail", status=500)
    llm_stub.set("openrouter", "fail", status=503)
    with pytest.raises(TransientLLMError, match=r"gemini: HTTP 500.*; openrouter: HTTP 503"):
        await llm.complete(ask())


async def test_stub_behaviour_can_be_limited_to_a_few_requests(
    gemini: GeminiProvider,
    llm_stub: LLMStub,
) -> None:
    llm_stub.set("gemini", "fail", status=503, times=1)
    with pytest.raises(TransientLLMError):
        await gemini.complete(ask())
    assert (await gemini.complete(ask("later"))).content == "gemini says: later"


async def test_a_provider_creates_its_client_once_and_closes_it(llm_stub: LLMStub) -> None:
    """One HTTP client per process (per Lambda container): made by start(), reused, closed."""
    gemini = gemini_at(llm_stub.gemini_base_url)
    openrouter = OpenRouterProvider("k", "a/b", llm_stub.openrouter_base_url, TIMEOUT_S)
    for provider in (gemini, openrouter):
        await provider.start()
    clients = (gemini._client, openrouter._client)
    assert all(c is not None for c in clients)
    for _ in range(3):
        answers = [(await p.complete(ask("again"))).content for p in (gemini, openrouter)]
        assert answers == ["gemini says: again", "openrouter says: again"]
    await gemini.start()  # a second start is a no-op
    assert (gemini._client, openrouter._client) == clients
    for provider in (gemini, openrouter):
        await provider.close()
    assert (gemini._client, openrouter._client) == (None, None)
    assert llm_stub.stats() == {"gemini": 3, "openrouter": 3}


@pytest.mark.parametrize("model", ["gemini/../../v1/evil", "gemini-x?key=attacker#", "gemini x"])
async def test_gemini_never_puts_a_model_that_is_not_a_plain_id_into_its_url(
    gemini: GeminiProvider, llm_stub: LLMStub, model: str
) -> None:
    with pytest.raises(PermanentLLMError, match="not a Gemini model id"):
        await gemini.complete(ask(model=model))

    assert llm_stub.seen_targets() == []


# Streaming: Gemini's `:streamGenerateContent?alt=sse`, OpenRouter's `"stream": true`.


async def streamed(provider: HttpProvider[Any], request: ChatRequest) -> list[Delta]:
    async with aclosing(provider.stream(request)) as deltas:
        return [delta async for delta in deltas]


async def test_a_stream_yields_the_answer_a_chunk_at_a_time_then_the_completion(
    provider: HttpProvider[Any],
) -> None:
    deltas = await streamed(provider, ask("what is up"))

    texts, done = [d.text for d in deltas[:-1]], deltas[-1].completion
    assert texts == [f"{provider.name} ", "says: ", "what ", "is ", "up"]  # the stub's chunks
    assert done is not None and deltas[-1].text == ""
    assert done.content == f"{provider.name} says: what is up" == "".join(texts)
    assert (done.provider, done.usage.output_tokens) == (provider.name, 5)
    assert done.usage.input_tokens > 0
    assert all(d.completion is None for d in deltas[:-1])


async def test_gemini_streams_over_sse_with_the_same_request(
    gemini: GeminiProvider, llm_stub: LLMStub
) -> None:
    await streamed(gemini, ask("what is up", temperature=0.2, max_tokens=50))

    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert llm_stub.seen_targets() == [f"{path}?alt=sse"]
    seen = llm_stub.last_request("gemini") or {}
    assert seen["headers"]["x-goog-api-key"] == "g-key"
    assert seen["body"]["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}


async def test_openrouter_asks_for_a_stream_that_ends_with_usage(
    openrouter: OpenRouterProvider, llm_stub: LLMStub
) -> None:
    await streamed(openrouter, ask())

    body = (llm_stub.last_request("openrouter") or {})["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_each_chunk_is_handed_over_as_it_arrives(
    provider: HttpProvider[Any], llm_stub: LLMStub
) -> None:
    llm_stub.set(provider.name, "ok", chunk_delay_s=0.1)
    patient = at(provider, llm_stub, timeout_s=10)
    arrivals: list[float] = []
    async with aclosing(patient.stream(ask("what is up"))) as deltas:
        async for _ in deltas:
            arrivals.append(time.monotonic())
    await patient.close()

    assert len(arrivals) == 6
    # five words 0.1 s apart: held back to the end they would come within a few milliseconds
    assert arrivals[4] - arrivals[0] >= 0.2


async def test_a_stream_that_stalls_past_the_timeout_is_transient(
    provider: HttpProvider[Any], llm_stub: LLMStub
) -> None:
    llm_stub.set(provider.name, "ok", chunk_delay_s=2)
    texts: list[str] = []
    started = time.monotonic()
    with pytest.raises(TransientLLMError, match="timed out"):
        async with aclosing(provider.stream(ask())) as deltas:
            async for delta in deltas:
                texts.append(delta.text)
    assert time.monotonic() - started < 1.5
    assert texts in ([], [f"{provider.name} "])  # at most the first word came in time


@pytest.mark.parametrize(
    ("mode", "status", "error", "match"),
    [("fail", 503, TransientLLMError, "HTTP 503"), ("fail", 400, PermanentLLMError, "HTTP 400"),
     ("rate_limit", 429, TransientLLMError, "HTTP 429"),
     ("block", 0, PermanentLLMError, "blocked|withheld"),
     ("safety", 0, PermanentLLMError, "withheld"), ("garbage", 0, TransientLLMError, "malformed")],
)  # fmt: skip
async def test_a_stream_fails_with_the_same_typed_errors(
    provider: HttpProvider[Any],
    llm_stub: LLMStub,
    mode: str,
    status: int,
    error: type[Exception],
    match: str,
) -> None:
    llm_stub.set(provider.name, mode, status=status, retry_after=7)
    with pytest.raises(error, match=match) as raised:
        await streamed(provider, ask())
    if status:
        assert getattr(raised.value, "status_code", None) == status
    if mode == "rate_limit":
        assert getattr(raised.value, "retry_after_s", None) == 7.0
    assert llm_stub.stats()[provider.name] == 1


async def test_a_stream_never_puts_a_model_that_is_not_a_plain_id_into_its_url(
    gemini: GeminiProvider, llm_stub: LLMStub
) -> None:
    with pytest.raises(PermanentLLMError, match="not a Gemini model id"):
        await streamed(gemini, ask(model="gemini-x/../../v1/evil:streamGenerateContent?"))

    assert llm_stub.seen_targets() == []
