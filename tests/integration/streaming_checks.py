"""What streaming must show in every layout that has a channel (embedded, Redis): the test
modules of each layout run these against their served API, the stub streaming slowly."""

from __future__ import annotations

import threading
import time

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from tests.sse import Event, id_order, read_events
from tests.stubs.fixtures import LLMStub

CHUNK_DELAY_S = 0.2
KEY = "key-one"
PROMPT = "tell me a story in eight words"  # the stub answers 'gemini says: <prompt>': 9 chunks


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)


def native(url: str, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def tokens_arrive_as_written(url: str, llm_stub: LLMStub, prompt: str = PROMPT) -> None:
    """The SDK's stream brings the answer in several pieces, the first long before the stub has
    written the last; together they are the job's recorded answer."""
    llm_stub.set("gemini", "ok", chunk_delay_s=CHUNK_DELAY_S)
    started = time.monotonic()
    with client(url) as sdk:
        stream = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": prompt}], stream=True
        )
        job_id = stream.headers["x-chatjobs-job-id"]
        arrivals: list[tuple[float, str]] = []
        for chunk in stream.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    total_s, first_s = time.monotonic() - started, arrivals[0][0]
    writing_s = CHUNK_DELAY_S * (len(f"gemini says: {prompt}".split()) - 1)
    assert total_s >= writing_s  # the stub took this long to write it all
    assert first_s < total_s - writing_s / 2, (first_s, total_s)  # and the first came early
    assert len(arrivals) >= 5  # a piece at a time, not the answer at the end
    assert arrivals[-1][0] - arrivals[0][0] >= writing_s / 2
    text = "".join(piece for _, piece in arrivals)
    with native(url) as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["result"]["content"] == text
    assert text == f"gemini says: {prompt}"


def a_dropped_connection_resumes_without_gaps_or_repeats(url: str, llm_stub: LLMStub) -> None:
    """Read the first events, hang up, reconnect with Last-Event-ID: the rest, and the job."""
    llm_stub.set("gemini", "ok", chunk_delay_s=CHUNK_DELAY_S)
    with native(url) as http:
        ask = {"messages": [{"role": "user", "content": PROMPT}]}
        job_id = http.post("/v1/jobs", json=ask).json()["id"]
        events_url = f"/v1/jobs/{job_id}/events"
        first = read_events(http, events_url, keep=3)  # running, then two deltas: hang up
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "running"  # mid-job
        rest = read_events(http, events_url, last_event_id=first[-1].id)

    events = first + rest
    assert [e.event for e in events[:2]] == ["status", "delta"]
    assert events[0].data == {"status": "running", "attempt": 1}
    *live, last = events
    ids = [e.id for e in live]
    assert ids == sorted(set(ids), key=id_order)  # increasing: no repeat
    deltas = [e.data for e in live if e.event == "delta"]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))  # no gap
    assert len(deltas) >= 5 and len(rest) > 2
    assert live[-1].data == {"status": "succeeded", "attempt": 1}
    assert (last.event, last.id, last.data["status"]) == ("job", "end", "succeeded")
    assert last.data["result"]["content"] == "".join(d["text"] for d in deltas)


def only_the_owner_follows_a_job(url: str, other_key: str) -> Event:
    """Another tenant's job is 404 (before any stream starts); the owner gets it."""
    with native(url) as http, native(url, other_key) as stranger:
        job_id = http.post("/v1/jobs", json={"messages": [{"role": "user", "content": "mine"}]})
        events_url = f"/v1/jobs/{job_id.json()['id']}/events"
        refused = stranger.get(events_url)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        *_, last = read_events(http, events_url)
    return last


def identical_streams_share_one_call_and_both_stream(url: str, llm_stub: LLMStub) -> None:
    """Two identical streamed requests a moment apart: one LLM call; the second request's job
    follows the first (coalesced) and still gets the text piece by piece as it is written."""
    llm_stub.set("gemini", "ok", chunk_delay_s=CHUNK_DELAY_S)
    prompt = f"a shared story {time.monotonic()}"
    results: dict[str, tuple[str, list[tuple[float, str]]]] = {}

    def ask(name: str) -> None:
        started = time.monotonic()
        with client(url) as sdk:
            stream = sdk.chat.completions.with_raw_response.create(
                model="gemini-2.5-flash",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
            )
            pieces = [
                (time.monotonic() - started, chunk.choices[0].delta.content)
                for chunk in stream.parse()
                if chunk.choices and chunk.choices[0].delta.content
            ]
        results[name] = (stream.headers["x-chatjobs-job-id"], pieces)

    first = threading.Thread(target=ask, args=("leader",))
    first.start()
    time.sleep(3 * CHUNK_DELAY_S)  # the first job is running and writing when the second comes
    ask("follower")
    first.join(timeout=30)
    answer = f"gemini says: {prompt}"
    assert llm_stub.calls_by_prompt()[prompt] == 1
    writing_s = CHUNK_DELAY_S * (len(answer.split()) - 1)
    with native(url) as http:
        for name, (job_id, pieces) in results.items():
            assert "".join(text for _, text in pieces) == answer, name
            job = http.get(f"/v1/jobs/{job_id}").json()
            assert job["result"]["content"] == answer
            assert job["coalesced"] is (name == "follower")
    follower = results["follower"][1]
    assert len(follower) >= 3  # pieces as written, not the answer at the end
    assert follower[-1][0] - follower[0][0] >= writing_s / 4


async def plain_cached_and_async_streamed_with_usage(url: str, llm_stub: LLMStub) -> None:
    """The SDK's other ways in, on this layout: a plain completion, the same again from the
    cache (no second LLM call), and the async client streaming with usage in a last chunk."""
    llm_stub.set("gemini", "ok", chunk_delay_s=CHUNK_DELAY_S / 4)
    ask: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "plain then cached on this layout"}
    ]
    with client(url) as sdk:
        first = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=ask
        )
        calls = llm_stub.stats()["gemini"]
        again = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=ask
        )
    assert first.headers["x-chatjobs-cached"] == "false"
    assert again.headers["x-chatjobs-cached"] == "true"
    assert again.headers["x-chatjobs-job-id"] != first.headers["x-chatjobs-job-id"]
    answer = first.parse().choices[0].message.content
    assert answer == "gemini says: plain then cached on this layout"
    assert again.parse().choices[0].message.content == answer
    assert llm_stub.stats()["gemini"] == calls  # the cache answered
    async with openai.AsyncOpenAI(
        base_url=f"{url}/openai/v1", api_key=KEY, max_retries=0
    ) as sdk_async:
        stream = await sdk_async.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "stream with usage on this layout"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "gemini says: stream with usage on this layout"
    assert len(pieces) >= 3  # streamed in pieces, not whole at the end
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
