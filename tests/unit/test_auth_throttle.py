"""AUTH_FAILURE_LIMIT: wrong API keys are counted per client address; past the limit that address
gets 429 with Retry-After, right key or not, while other addresses are served as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import ValidationError
from starlette.requests import Request

from api import auth
from api.ratelimit import TenantRateLimiter
from shared.adapters.ratelimit.memory import MemoryRateWindow
from tests.conftest import make_settings
from tests.unit.conftest import T1, Api, chat, running_api

WRONG = {"Authorization": "Bearer not-a-key"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def from_address(api: Api, host: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


async def post(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/jobs", json=chat(), headers=headers)


async def test_wrong_keys_past_the_limit_get_429_and_so_does_the_right_key() -> None:
    async with running_api(auth_failure_limit="3/minute") as api:
        statuses = [(await post(api.client, WRONG)).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        for headers in (WRONG, T1):  # no oracle: the right key answers as a wrong one does
            response = await post(api.client, headers)
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "rate_limited"
            assert 0 < int(response.headers["retry-after"]) <= 60
            assert "failed authentications" in response.json()["error"]["message"]
        assert api.store.jobs == {}


async def test_the_right_key_from_another_address_still_works() -> None:
    async with running_api(auth_failure_limit="3/minute") as api:
        async with from_address(api, "198.51.100.7") as attacker:
            for _ in range(4):
                await post(attacker, WRONG)
            assert (await post(attacker, T1)).status_code == 429
        async with from_address(api, "198.51.100.8") as neighbour:
            assert (await post(neighbour, T1)).status_code == 202
        assert (await post(api.client, T1)).status_code == 202


async def test_the_right_key_works_again_once_the_window_has_room() -> None:
    clock = Clock()
    async with running_api() as api:
        api.app.state.auth_throttle = TenantRateLimiter("3/minute", MemoryRateWindow(clock))
        for _ in range(3):
            assert (await post(api.client, WRONG)).status_code == 401
        clock.now += 30
        assert (await post(api.client, T1)).status_code == 429
        retry_after = int((await post(api.client, WRONG)).headers["retry-after"])
        assert retry_after == 30  # the first failure leaves the minute then
        clock.now += retry_after
        assert (await post(api.client, T1)).status_code == 202


async def test_requests_without_a_key_are_not_counted() -> None:
    async with running_api(auth_failure_limit="2/minute") as api:
        for _ in range(5):
            assert (await api.client.post("/v1/jobs", json=chat())).status_code == 401
        assert (await post(api.client, T1)).status_code == 202


async def test_right_keys_are_not_counted() -> None:
    async with running_api(auth_failure_limit="2/minute") as api:
        for _ in range(5):
            assert (await post(api.client, T1)).status_code == 202
        assert (await post(api.client, WRONG)).status_code == 401


def scope_from(host: str | None) -> Request:
    client = (host, 1) if host is not None else None
    return Request({"type": "http", "client": client, "headers": []})


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one budget
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_the_address_failures_count_against(host: str | None, counted_as: str) -> None:
    assert auth.client_address(scope_from(host)) == counted_as


@pytest.mark.parametrize("value", ["0/minute", "lots", ""])
def test_a_bad_auth_failure_limit_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="auth_failure_limit"):
        make_settings(auth_failure_limit=value)
