"""Failed authentications throttled per client address by a real `python -m api`, directly and
behind a trusted proxy (FORWARDED_ALLOW_IPS): X-Forwarded-For counts only from the proxy."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Api, Launcher, chat

pytestmark = pytest.mark.e2e

KEYS = {"API_KEYS": "t1:k1", "AUTH_FAILURE_LIMIT": "2/minute"}


def post(api: Api, key: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with api.client(key) as client:
        return client.post("/v1/jobs", json=chat("hi"), headers=headers)


def test_a_client_cannot_pick_its_address_when_no_proxy_is_trusted(launcher: Launcher) -> None:
    api = launcher.api(**KEYS)
    forged = [f"203.0.113.{n}" for n in range(1, 5)]
    statuses = [post(api, "wrong", forwarded_for=f).status_code for f in forged]
    assert statuses == [401, 401, 429, 429]
    refused = post(api, "k1", forwarded_for="198.51.100.1")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    launcher: Launcher,
) -> None:
    api = launcher.api(FORWARDED_ALLOW_IPS="127.0.0.1", **KEYS)
    statuses = [post(api, "wrong", forwarded_for="203.0.113.1").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert post(api, "k1", forwarded_for="203.0.113.1").status_code == 429
    assert post(api, "k1", forwarded_for="203.0.113.2").status_code in (200, 202)
