"""/v1/admin/keys over the app wired to fakes: who may call it (401 / 403), what it answers, and
how keys made there authenticate (tenant, key id, default priority) on the tenant routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chatjobs_cli.keys import key_row
from shared.models import utcnow
from tests.unit.conftest import T1, Api, chat, running_api

ADMIN = {"Authorization": "Bearer admin-secret"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def make_key(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/admin/keys", json={"tenant": "acme", "name": "prod", **body}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


@pytest.fixture
async def admin_api() -> Any:
    async with running_api(admin_api_keys="admin-secret,second-admin") as running:
        yield running


ADMIN_ROUTES = [
    ("POST", "/v1/admin/keys", {"tenant": "acme", "name": "x"}),
    ("GET", "/v1/admin/keys", None),
    ("GET", "/v1/admin/keys/key_x", None),
    ("POST", "/v1/admin/keys/key_x/revoke", None),
    ("POST", "/v1/admin/keys/key_x/rotate", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_no_key_or_a_wrong_one_is_401_and_a_tenant_key_403(
    admin_api: Api, method: str, path: str, body: Any
) -> None:
    for headers in ({}, bearer("wrong"), bearer("ck_" + "w" * 43)):
        response = await admin_api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    tenant = await admin_api.client.request(method, path, json=body, headers=T1)
    assert tenant.status_code == 403 and tenant.json()["error"]["code"] == "forbidden"
    secret = (await make_key(admin_api))["key"]
    runtime = await admin_api.client.request(method, path, json=body, headers=bearer(secret))
    assert runtime.status_code == 403
    second = await admin_api.client.request(method, path, json=body, headers=bearer("second-admin"))
    assert second.status_code not in (401, 403)


async def test_without_admin_keys_there_is_no_admin_api(api: Api) -> None:
    response = await api.client.get("/v1/admin/keys", headers=ADMIN)
    assert response.status_code == 401


async def test_a_made_key_is_shown_once_and_authenticates_its_tenant(admin_api: Api) -> None:
    made = await make_key(
        admin_api, limits={"rpm": 60, "max_in_flight": 5}, priority="high", name="backend"
    )
    secret = made["key"]
    assert secret.startswith("ck_") and made["prefix"] == secret[:11]
    assert made["id"].startswith("key_") and made["status"] == "active"
    assert made["limits"]["rpm"] == 60 and made["priority"] == "high"
    assert made["last_used_at"] is None and made["expires_at"] is None

    submitted = await admin_api.submit(headers=bearer(secret))
    assert submitted.status_code == 202
    job = admin_api.store.jobs[submitted.json()["id"]]
    assert (job.tenant, job.key_id, job.priority) == ("acme", made["id"], "high")

    shown = (await admin_api.client.get(f"/v1/admin/keys/{made['id']}", headers=ADMIN)).json()
    assert "key" not in shown and secret not in str(shown)
    assert shown["last_used_at"] is not None
    listing = (await admin_api.client.get("/v1/admin/keys", headers=ADMIN)).json()
    assert [k["id"] for k in listing["data"]] == [made["id"]]
    assert secret not in str(listing) and "hash" not in str(listing)


async def test_a_tenant_sees_only_its_own_jobs_whichever_key_it_uses(admin_api: Api) -> None:
    acme = (await make_key(admin_api, tenant="t1"))["key"]
    other = (await make_key(admin_api, tenant="t2"))["key"]
    job_id = (await admin_api.submit(headers=T1)).json()["id"]
    assert (await admin_api.client.get(f"/v1/jobs/{job_id}", headers=bearer(acme))).is_success
    hidden = await admin_api.client.get(f"/v1/jobs/{job_id}", headers=bearer(other))
    assert hidden.status_code == 404


async def test_listing_filters_by_tenant_and_pages(admin_api: Api) -> None:
    ids = [(await make_key(admin_api, tenant="a" if n % 2 else "b"))["id"] for n in range(5)]
    page = (await admin_api.client.get("/v1/admin/keys?limit=2", headers=ADMIN)).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = await admin_api.client.get(
        "/v1/admin/keys", params={"cursor": page["next_cursor"], "limit": 10}, headers=ADMIN
    )
    seen = [k["id"] for k in page["data"] + rest.json()["data"]]
    assert sorted(seen) == sorted(ids) and rest.json()["next_cursor"] is None
    only_a = (await admin_api.client.get("/v1/admin/keys?tenant=a", headers=ADMIN)).json()
    assert {k["tenant"] for k in only_a["data"]} == {"a"} and len(only_a["data"]) == 2
    bad = await admin_api.client.get("/v1/admin/keys?cursor=bm9wZQ==", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


async def test_revoked_is_refused_at_once_by_the_process_that_revoked(admin_api: Api) -> None:
    made = await make_key(admin_api)
    assert (await admin_api.submit(headers=bearer(made["key"]))).status_code == 202
    revoked = await admin_api.client.post(f"/v1/admin/keys/{made['id']}/revoke", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = await admin_api.submit(headers=bearer(made["key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    again = await admin_api.client.post(f"/v1/admin/keys/{made['id']}/revoke", headers=ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    rotate = await admin_api.client.post(f"/v1/admin/keys/{made['id']}/rotate", headers=ADMIN)
    assert rotate.status_code == 409 and "revoked" in rotate.json()["error"]["message"]


async def test_rotation_gives_a_new_secret_and_a_grace_to_the_old(admin_api: Api) -> None:
    made = await make_key(admin_api)
    rotated = await admin_api.client.post(
        f"/v1/admin/keys/{made['id']}/rotate", json={"grace_period_s": 600}, headers=ADMIN
    )
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["id"] == made["id"] and new["key"] != made["key"]
    assert new["previous_secret_valid_until"] is not None
    assert (await admin_api.submit(headers=bearer(new["key"]))).status_code == 202
    assert (await admin_api.submit(headers=bearer(made["key"]))).status_code == 202
    now_only = await admin_api.client.post(
        f"/v1/admin/keys/{made['id']}/rotate", json={"grace_period_s": 0}, headers=ADMIN
    )
    newest = now_only.json()["key"]
    assert now_only.json()["previous_secret_valid_until"] is None
    assert (await admin_api.submit(headers=bearer(new["key"]))).status_code == 401
    assert (await admin_api.submit(headers=bearer(made["key"]))).status_code == 401
    assert (await admin_api.submit(headers=bearer(newest))).status_code == 202
    default = await admin_api.client.post(f"/v1/admin/keys/{made['id']}/rotate", headers=ADMIN)
    assert default.status_code == 200


async def test_an_expired_key_is_refused(admin_api: Api) -> None:
    made = await make_key(admin_api, expires_at=(utcnow() + timedelta(days=1)).isoformat())
    assert (await admin_api.submit(headers=bearer(made["key"]))).status_code == 202
    record = admin_api.store.api_keys[made["id"]]
    admin_api.store.api_keys[made["id"]] = record.model_copy(update={"expires_at": utcnow()})
    admin_api.app.state.services.keys.resolver.forget()
    assert (await admin_api.submit(headers=bearer(made["key"]))).status_code == 401
    shown = await admin_api.client.get(f"/v1/admin/keys/{made['id']}", headers=ADMIN)
    assert shown.json()["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant": "acme"}, "name"),
        ({"name": "x"}, "tenant"),
        ({"tenant": "a b", "name": "x"}, "tenant"),
        ({"tenant": "acme", "name": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"tenant": "acme", "name": "x", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"tenant": "acme", "name": "x", "limits": {"rpm": 0}}, "limits.rpm"),
        ({"tenant": "acme", "name": "x", "limits": {"rps": 1}}, "limits.rps"),
        ({"tenant": "acme", "name": "x", "priority": "urgent"}, "priority"),
        ({"tenant": "acme", "name": "x", "key": "ck_mine"}, "key"),
    ],
)
async def test_a_bad_key_body_is_422_naming_the_field(
    admin_api: Api, body: dict[str, Any], field: str
) -> None:
    response = await admin_api.client.post("/v1/admin/keys", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert field in [f["field"] for f in response.json()["error"]["fields"]]


async def test_a_bad_grace_or_an_unknown_key_is_refused(admin_api: Api) -> None:
    made = await make_key(admin_api)
    for grace in (-1, 30 * 86_400 + 1, "soon"):
        response = await admin_api.client.post(
            f"/v1/admin/keys/{made['id']}/rotate", json={"grace_period_s": grace}, headers=ADMIN
        )
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "grace_period_s"
    for method, path in (("GET", ""), ("POST", "/revoke"), ("POST", "/rotate")):
        missing = await admin_api.client.request(
            method, f"/v1/admin/keys/key_missing{path}", headers=ADMIN
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_admin_keys_alone_close_the_tenant_routes() -> None:
    async with running_api(api_keys="", admin_api_keys="admin-secret") as api:
        assert (await api.client.post("/v1/jobs", json=chat())).status_code == 401
        secret = (await make_key(api))["key"]
        assert (await api.submit(headers=bearer(secret))).status_code == 202
        assert (await api.submit(headers=ADMIN)).status_code == 401  # not a tenant's key


async def test_wrong_run_time_keys_count_against_the_address() -> None:
    async with running_api(admin_api_keys="admin-secret", auth_failure_limit="2/minute") as api:
        secret = (await make_key(api))["key"]
        lookups = api.app.state.services.keys.resolver.lookups
        statuses = [(await api.submit(headers=bearer("ck_" + "g" * 43))).status_code]
        statuses += [(await api.submit(headers=bearer("ck_" + "h" * 43))).status_code]
        statuses += [(await api.submit(headers=bearer("ck_" + "i" * 43))).status_code]
        assert statuses == [401, 401, 429]
        assert (await api.submit(headers=bearer(secret))).status_code == 429
        assert api.app.state.services.keys.resolver.lookups == lookups + 2  # not after the limit


async def test_a_store_that_cannot_answer_refuses_run_time_keys_with_503(admin_api: Api) -> None:
    secret = (await make_key(admin_api))["key"]

    async def unreachable(key_hash: str) -> None:
        raise OSError("the store is down")

    admin_api.store.find_key_by_hash = unreachable  # type: ignore[method-assign]
    admin_api.app.state.services.keys.resolver.forget()
    refused = await admin_api.submit(headers=bearer(secret))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert refused.json()["error"]["code"] == "unavailable"
    assert (await admin_api.submit(headers=T1)).status_code == 202  # bootstrap keys still work


async def test_the_listing_and_a_read_show_each_keys_usage_this_month(admin_api: Api) -> None:
    budgeted = await make_key(admin_api, limits={"monthly_tokens": 1000, "max_in_flight": 5})
    free = await make_key(admin_api, tenant="t2")
    assert budgeted["usage"]["requests"] == 0 and budgeted["usage"]["in_flight"] == 0
    assert free["usage"]["in_flight"] is None  # no max_in_flight: not counted
    for n in range(3):
        body = chat(f"q{n} a b", max_tokens=40)
        assert (await admin_api.submit(body, headers=bearer(budgeted["key"]))).status_code == 202
    assert (await admin_api.submit(chat("x y"), headers=bearer(free["key"]))).status_code == 202

    held = await admin_api.client.get(f"/v1/admin/keys/{budgeted['id']}", headers=ADMIN)
    usage = held.json()["usage"]
    assert (usage["requests"], usage["tokens"], usage["in_flight"]) == (3, 120, 3)  # reserved
    assert usage["resets_at"].startswith(f"{_next_month()}-01T00:00:00")

    await admin_api.queue.drain()

    listing = (await admin_api.client.get("/v1/admin/keys", headers=ADMIN)).json()["data"]
    shown = {k["id"]: k["usage"] for k in listing}
    figures = {k: (u["requests"], u["tokens"], u["in_flight"]) for k, u in shown.items()}
    # FakeLLM: "q0 a b" is 3 tokens in, 3 out; "x y" 2 and 2
    assert figures == {budgeted["id"]: (3, 18, 0), free["id"]: (1, 4, None)}
    assert {u["month"] for u in shown.values()} == {utcnow().strftime("%Y-%m")}
    rows = {k["id"]: key_row(k).split() for k in listing}  # `chatjobs keys list`
    assert rows[budgeted["id"]][4:7] == ["3", "18/1000", "0/5"]
    assert rows[free["id"]][4:7] == ["1", "4", "-"]


def _next_month() -> str:
    now = utcnow()
    return f"{now.year + 1}-01" if now.month == 12 else f"{now.year}-{now.month + 1:02d}"


async def test_admin_usage_counts_the_tenants_of_run_time_keys(admin_api: Api) -> None:
    made = await make_key(admin_api, tenant="acme")  # no bootstrap key for acme
    assert (await admin_api.submit(chat("x y"), headers=bearer(made["key"]))).status_code == 202
    assert (await admin_api.submit(chat("a b c"), headers=T1)).status_code == 202
    await admin_api.queue.drain()
    usage = (await admin_api.client.get("/v1/admin/usage", headers=ADMIN)).json()
    requests = {t["tenant"]: sum(r["requests"] for r in t["data"]) for t in usage["tenants"]}
    assert requests == {"acme": 1, "t1": 1, "t2": 0}
    assert sum(row["requests"] for row in usage["total"]) == 2
    signed_in = await admin_api.client.post("/console/sign-in", data={"key": "admin-secret"})
    assert signed_in.status_code == 303, signed_in.text
    page = await admin_api.client.get("/console/usage")  # the client keeps the session cookie
    assert page.status_code == 200 and '<option value="acme"' in page.text
