"""GET /v1/usage through the app, with fakes at the ports: the contract's shape, the caller's tenant
only, defaults, and 422s that name the parameter at fault."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.errors import PermanentLLMError
from shared.models import utcnow
from tests.unit.conftest import T1, T2, Api, chat, running_api

ROW_FIELDS = {
    "group",
    "requests",
    "succeeded",
    "failed",
    "cancelled",
    "cache_hits",
    "coalesced",
    "llm_calls",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "latency_ms_p50",
    "latency_ms_p95",
    "failed_by_code",  # beyond the contract's fields
}


async def usage(api: Api, headers: dict[str, str] = T1, /, **params: str) -> Any:
    response = await api.client.get("/v1/usage", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def refused(api: Api, **params: str) -> set[str]:
    """The fields a 422 names."""
    response = await api.client.get("/v1/usage", params=params, headers=T1)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    return {field["field"] for field in error["fields"]}


async def test_the_last_seven_days_by_day_for_the_callers_tenant_only(api: Api) -> None:
    await api.submit(chat("hello"))
    await api.queue.drain()
    assert (await api.submit(chat("hello"))).status_code == 200  # a cache hit
    api.llm.errors.append(PermanentLLMError("blocked", provider="fake"))
    await api.submit(chat("blocked prompt"))
    await api.queue.drain()
    await api.submit(chat("for t2"), headers=T2)
    await api.queue.drain()

    today = utcnow().date()
    body = await usage(api)
    assert {k: body[k] for k in ("from", "to", "group_by")} == {
        "from": (today - timedelta(days=6)).isoformat(),
        "to": today.isoformat(),
        "group_by": "day",
    }
    (row,) = body["data"]
    assert set(row) == ROW_FIELDS
    assert row["group"] == today.isoformat()
    assert (row["requests"], row["succeeded"], row["failed"], row["cache_hits"]) == (3, 2, 1, 1)
    assert (row["llm_calls"], row["fallbacks"]) == (2, 0)
    assert row["failed_by_code"] == {"llm_rejected": 1}
    assert row["latency_ms_p50"] == 11  # the fake answers in 1 ms: the first bucket

    (other,) = (await usage(api, T2))["data"]
    assert (other["requests"], other["succeeded"]) == (1, 1)


async def test_group_by_model_and_provider() -> None:
    async with running_api(gemini_model="m-a", openrouter_model="m-b") as api:
        await _group_by_model_and_provider(api)


async def _group_by_model_and_provider(api: Api) -> None:
    await api.submit(chat("hello", model="m-a"))
    await api.submit(chat("hello", model="m-b"))
    await api.queue.drain()
    await api.submit(chat("hello", model="m-a"))  # cached
    by_model = (await usage(api, group_by="model"))["data"]
    assert [(r["group"], r["requests"]) for r in by_model] == [("m-a", 2), ("m-b", 1)]
    by_provider = (await usage(api, group_by="provider"))["data"]
    assert [(r["group"], r["requests"]) for r in by_provider] == [("cache", 1), ("fake", 2)]
    assert by_provider[0]["latency_ms_p50"] is None


async def test_a_period_without_usage_has_no_rows(api: Api) -> None:
    body = await usage(api, **{"from": "2020-01-01", "to": "2020-12-31"})
    assert body == {"from": "2020-01-01", "to": "2020-12-31", "group_by": "day", "data": []}


async def test_one_bound_alone(api: Api) -> None:
    body = await usage(api, to="2024-03-10")
    assert (body["from"], body["to"]) == ("2024-03-04", "2024-03-10")
    start = (utcnow().date() - timedelta(days=30)).isoformat()
    body = await usage(api, **{"from": start})
    assert (body["from"], body["to"]) == (start, utcnow().date().isoformat())


async def test_a_year_of_366_days_is_the_longest_period(api: Api) -> None:
    await usage(api, **{"from": "2024-01-01", "to": "2024-12-31"})  # 366 days (leap year)
    await usage(api, **{"from": "2023-01-01", "to": "2024-01-01"})  # 366 days
    assert await refused(api, **{"from": "2023-01-01", "to": "2024-01-02"}) == {"from", "to"}


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"from": "2024-03-02", "to": "2024-03-01"}, {"from", "to"}),
        ({"from": (utcnow().date() + timedelta(days=30)).isoformat()}, {"from", "to"}),
        ({"group_by": "week"}, {"group_by"}),
        ({"from": "yesterday"}, {"from"}),
        ({"to": "2024-02-30"}, {"to"}),
        ({"from": "2024-13-01"}, {"from"}),
        ({"to": "0"}, {"to"}),  # not read as a timestamp
        ({"from": "2024-01-01T00:00:00"}, {"from"}),
    ],
)
async def test_bad_parameters_answer_422_naming_the_field(
    api: Api, params: dict[str, str], fields: set[str]
) -> None:
    assert await refused(api, **params) == fields


async def test_usage_needs_a_key(api: Api) -> None:
    response = await api.client.get("/v1/usage")
    assert response.status_code == 401


async def test_a_jobs_result_keeps_the_public_shape(api: Api) -> None:
    job = (await api.submit(chat("hello"))).json()
    await api.queue.drain()
    done = (await api.client.get(f"/v1/jobs/{job['id']}", headers=T1)).json()
    assert set(done["result"]) == {"content", "provider", "model", "usage", "latency_ms"}


async def test_group_by_key_puts_keys_from_api_keys_under_bootstrap(api: Api) -> None:
    await api.submit(chat("hello"))
    await api.queue.drain()
    by_key = (await usage(api, group_by="key"))["data"]
    assert [(r["group"], r["requests"]) for r in by_key] == [("bootstrap", 1)]
    assert set(by_key[0]) == ROW_FIELDS
