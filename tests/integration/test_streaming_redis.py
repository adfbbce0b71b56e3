"""Streaming through the queue in the Redis layout: the API (arq queue, Redis Streams) and an arq
worker apart, each with its own event loop, on the test Redis and one SQLite file. The `openai`
SDK and an SSE client reach the API over HTTP; the stub LLM server streams slowly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from shared.adapters.streams.redis import PREFIX
from tests.conftest import make_settings
from tests.integration import streaming_checks as check
from tests.serving import ServedApi, ServedWorker
from tests.stubs.fixtures import LLMStub

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]
KEYS = {"t1": check.KEY, "t2": "key-two"}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, llm_stub_server: LLMStub, redis_url: str
) -> Iterator[str]:
    flush(redis_url)
    db = Path(tmp_path_factory.mktemp("streaming-redis")) / "chatjobs.db"
    settings = make_settings(
        api_keys=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        queue_backend="arq",
        cache_backend="redis",
        redis_url=redis_url,
        sqlite_path=str(db),
        gemini_api_key="test",
        gemini_base_url=llm_stub_server.gemini_base_url,
        openrouter_api_key="test",
        openrouter_base_url=llm_stub_server.openrouter_base_url,
        llm_timeout_s=10,
        chat_completions_wait_s=10,
        arq_poll_delay_s=0.05,
    )
    with ServedApi(settings) as api, ServedWorker(settings):
        yield api.url
    flush(redis_url)


def flush(redis_url: str) -> None:
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()


def test_tokens_reach_the_sdk_through_redis_as_the_provider_writes_them(
    served: str, llm_stub: LLMStub, redis_url: str
) -> None:
    check.tokens_arrive_as_written(served, llm_stub)
    with Redis.from_url(redis_url) as redis:
        (key,) = redis.keys(PREFIX + "*")  # the job's stream, kept a short while after its end
        assert 0 < redis.ttl(key) <= 300


def test_a_dropped_event_stream_resumes_after_its_redis_event_id(
    served: str, llm_stub: LLMStub
) -> None:
    check.a_dropped_connection_resumes_without_gaps_or_repeats(served, llm_stub)


def test_another_tenants_job_is_not_found(served: str, llm_stub: LLMStub) -> None:
    last = check.only_the_owner_follows_a_job(served, KEYS["t2"])
    assert last.data["status"] == "succeeded"


def test_a_coalesced_follower_streams_its_leaders_text_through_redis(
    served: str, llm_stub: LLMStub
) -> None:
    check.identical_streams_share_one_call_and_both_stream(served, llm_stub)


async def test_plain_cached_and_async_streamed_completions_through_redis(
    served: str, llm_stub: LLMStub
) -> None:
    await check.plain_cached_and_async_streamed_with_usage(served, llm_stub)
