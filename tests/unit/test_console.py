"""The console over HTTP (fakes at the ports): sign-in, the session cookie's attributes, CSRF on
every action, pages rendered for a signed-in operator only. The browser tests
(tests/e2e/test_console_browser.py) click through the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from api.console.session import COOKIE
from shared.models import AttemptOutcome, AttemptRecord, Completion, JobStatus, utcnow
from tests.fakes import FakeDeadLetters
from tests.unit.conftest import T2, Api, chat, running_api

ADMIN_KEY = "admin-key"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api(admin_api_keys=ADMIN_KEY) as running:
        yield running


async def sign_in(client: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    return await client.post("/console/sign-in", data={"key": key})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def test_a_tenant_key_cannot_sign_in(api: Api) -> None:
    refused = await sign_in(api.client, "k1")
    assert refused.status_code == 403 and "tenant" in refused.text
    assert COOKIE not in refused.cookies
    wrong = await sign_in(api.client, "not-a-key")
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies


async def test_the_session_cookie_is_signed_httponly_and_strict(api: Api) -> None:
    signed_in = await sign_in(api.client)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and ADMIN_KEY not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back


async def test_the_cookie_is_secure_over_https(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as client:
        assert "Secure" in (await sign_in(client)).headers["set-cookie"]


async def test_pages_need_a_session(api: Api) -> None:
    for path in ("/console/overview", "/console/jobs", "/console/usage", "/console/dead-letters"):
        response = await api.client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    api.client.cookies.set(COOKIE, "forged.value.here", path="/console")
    assert (await api.client.get("/console/overview")).status_code == 303
    fragment = await api.client.get("/console/overview", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"] == "/console/sign-in"


async def test_every_page_renders_for_an_operator(api: Api) -> None:
    job_id = (await api.submit(chat("from t2"), headers=T2)).json()["id"]
    await sign_in(api.client)
    for path in (
        "/console/overview",
        "/console/jobs",
        f"/console/jobs/{job_id}",
        "/console/batches",
        "/console/usage",
        "/console/webhooks",
        "/console/dead-letters",
    ):
        page = await api.client.get(path)
        assert page.status_code == 200, path
        assert "script-src 'self'" in page.headers["content-security-policy"]
    listing = await api.client.get("/console/jobs", params={"tenant": "t2"})
    assert job_id in listing.text


async def test_the_job_page_lists_its_attempts_then_its_end(api: Api) -> None:
    job_id = (await api.submit(chat("flaky"), headers=T2)).json()["id"]
    now = utcnow()
    log = [
        AttemptRecord(attempt=1, started_at=now, ended_at=now, outcome=AttemptOutcome.lost,
                      code="lease_expired"),
        AttemptRecord(attempt=2, started_at=now, ended_at=now, outcome=AttemptOutcome.retrying,
                      provider="gemini", code="http_503", message="gemini: <HTTP 503>"),
    ]  # fmt: skip
    answer = Completion(content="ok", provider="openrouter", model="m")
    api.store.jobs[job_id] = api.store.jobs[job_id].model_copy(
        update={"status": JobStatus.succeeded, "attempts": 3, "attempt_log": log,
                "result": answer, "completed_at": now}
    )  # fmt: skip
    await sign_in(api.client)
    page = (await api.client.get(f"/console/jobs/{job_id}")).text
    rows = re.findall(r'<tr data-testid="attempt(?:-final)?"[^>]*>(.*?)</tr>', page)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [(c[0], re.sub("<[^>]+>", "", c[3]), c[4]) for c in cells] == [
        ("1", "lost", "—"),
        ("2", "retrying", "gemini"),
        ("3", "succeeded", "openrouter"),
    ]
    assert "<code>http_503</code> gemini: &lt;HTTP 503&gt;" in cells[1][5]


async def test_actions_need_the_sessions_csrf_token(api: Api) -> None:
    job_id = (await api.submit(chat("cancel me"), headers=T2)).json()["id"]
    await sign_in(api.client)
    token = csrf_of((await api.client.get(f"/console/jobs/{job_id}")).text)
    action = f"/console/jobs/{job_id}/cancel"
    assert (await api.client.post(action)).status_code == 403
    assert (await api.client.post(action, data={"csrf_token": "forged"})).status_code == 403
    assert (await api.client.post(action, headers={"X-CSRF-Token": token + "x"})).status_code == 403
    assert api.store.jobs[job_id].status.value == "queued"
    done = await api.client.post(action, data={"csrf_token": token})
    assert done.status_code == 303 and "cancelled" in done.headers["location"]
    assert api.store.jobs[job_id].status.value == "cancelled"


async def test_a_token_of_another_session_is_refused(api: Api) -> None:
    job_id = (await api.submit(chat("keep me"), headers=T2)).json()["id"]
    await sign_in(api.client)
    other_token = csrf_of((await api.client.get("/console/overview")).text)
    api.client.cookies.clear()
    await sign_in(api.client)  # a new session: a new token
    response = await api.client.post(
        f"/console/jobs/{job_id}/cancel", data={"csrf_token": other_token}
    )
    assert response.status_code == 403


async def test_the_embedded_layout_says_it_has_no_dead_letter_queues(api: Api) -> None:
    await sign_in(api.client)
    page = await api.client.get("/console/dead-letters")
    assert 'data-testid="no-dead-letter-queues"' in page.text and "status=failed" in page.text
    assert 'href="/console/dead-letters" aria-current="page"' in page.text
    fragment = await api.client.get("/console/dead-letters", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "no-dead-letter-queues" in fragment.text


async def test_redrive_a_dead_letter_queue_with_the_csrf_token(api: Api) -> None:
    dead = FakeDeadLetters("jobs", "batch")
    dead.dead["batch"] = ["m1", "m2"]
    state = api.app.state
    state.services = replace(state.services, dead_letters=dead)  # as the AWS layout has
    await sign_in(api.client)
    page = (await api.client.get("/console/dead-letters")).text
    rows = re.findall(r'data-queue="(\w+)">.*?dead-letter-depth">(\d+)<', page, re.S)
    assert rows == [("jobs", "0"), ("batch", "2")]
    action = "/console/dead-letters/batch/redrive"
    assert (await api.client.post(action)).status_code == 403
    assert dead.dead["batch"] == ["m1", "m2"]
    done = await api.client.post(action, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 303 and "2+moved" in done.headers["location"]
    assert dead.sources["batch"] == ["m1", "m2"] and dead.dead["batch"] == []
    unknown = await api.client.post(
        "/console/dead-letters/nope/redrive", data={"csrf_token": csrf_of(page)}
    )
    assert "Not+done" in unknown.headers["location"]


async def test_a_batchs_results_download_from_the_console(api: Api) -> None:
    """The Batches page's Results link: another tenant's batch, as NDJSON, a line per request in
    submission order; without a session, the sign-in page."""
    body = {"requests": [{"custom_id": f"r{i}", **chat(f"b{i}")} for i in range(3)]}
    batch = (await api.client.post("/v1/batches", json=body, headers=T2)).json()
    path = f"/console/batches/{batch['id']}/results"
    assert (await api.client.get(path)).status_code == 303
    await sign_in(api.client)
    download = await api.client.get(path)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/x-ndjson")
    assert f'filename="{batch["id"]}.jsonl"' in download.headers["content-disposition"]
    lines = [json.loads(line) for line in download.text.splitlines()]
    assert [line["custom_id"] for line in lines] == ["r0", "r1", "r2"]
    assert (await api.client.get("/console/batches/batch_nope/results")).status_code == 404
