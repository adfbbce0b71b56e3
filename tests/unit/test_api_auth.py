"""Bearer keys map to tenants; no keys means one anonymous tenant (never on Lambda)."""

from __future__ import annotations

import logging

import pytest

from api.app import create_app
from api.auth import tenant_for_key
from shared.config import ANONYMOUS_TENANT
from shared.factory import ServiceFactory
from tests.conftest import make_settings
from tests.unit.conftest import T1, Api, chat, running_api

PROTECTED = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/job_x"),
    ("POST", "/v1/jobs/job_x/cancel"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic azE6"},
        {"Authorization": "k1"},
        {"Authorization": "Bearer k1x"},
        {"Authorization": "Bearer t1:k1"},
    ],
)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_or_wrong_key_is_401(
    api: Api, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await api.client.request(method, path, headers=headers, json=chat())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert api.store.jobs == {}


async def test_auth_is_checked_before_the_body(api: Api) -> None:
    response = await api.client.post("/v1/jobs", content=b"{not json")
    assert response.status_code == 401


async def test_key_is_case_sensitive_and_scheme_is_not(api: Api) -> None:
    assert (await api.submit(headers={"Authorization": "Bearer K1"})).status_code == 401
    assert (await api.submit(headers={"Authorization": "bearer k1"})).status_code == 202


async def test_valid_key_reaches_its_tenant(api: Api) -> None:
    job_id = (await api.submit(headers=T1)).json()["id"]
    assert api.store.jobs[job_id].tenant == "t1"


async def test_no_keys_serves_the_anonymous_tenant(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="api.app"):
        async with running_api(api_keys="") as api:
            response = await api.client.post("/v1/jobs", json=chat())
            assert response.status_code == 202
            assert api.store.jobs[response.json()["id"]].tenant == ANONYMOUS_TENANT
            wrong = await api.submit(headers={"Authorization": "Bearer whatever"})
            assert wrong.status_code == 202
    assert any("API_KEYS is empty" in r.message for r in caplog.records)


def test_lambda_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatjobs-api")
    with pytest.raises(RuntimeError, match="API_KEYS"):
        create_app(ServiceFactory(make_settings(api_keys="")))
    create_app(ServiceFactory(make_settings(api_keys="t1:k1")))


def test_tenant_for_key() -> None:
    keys = {"k1": "t1", "k2": "t2"}
    assert tenant_for_key("k2", keys) == "t2"
    assert tenant_for_key("k", keys) is None
    assert tenant_for_key("", keys) is None
    assert tenant_for_key("ключ", keys) is None


async def test_probes_and_docs_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert (await api.client.get(path)).status_code == 200, path
