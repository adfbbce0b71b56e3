"""The operator console in a real headless browser: Debian's chromium driven by Playwright (its
executable path; no browser is downloaded), against a running `python -m api` holding live data:
jobs of two tenants, a failed job, a batch running (the stub LLM stalls), a queued job, and a job
answered after one retry whose webhook receiver (on loopback) answers 500 until the delivery
gives up.

Signs in, renders every page with that data (no browser console error; Dead letters says this
layout has none: redrive is covered over HTTP on moto, tests/integration/test_dead_letters_aws.py),
clicks cancel, retry, re-deliver and batch-cancel and checks their effect through the admin API;
a tenant key is refused, a missing or forged CSRF token too, and the session cookie is HttpOnly and
SameSite=Strict. Screenshots of every page go to CONSOLE_SCREENSHOTS (`make console-screenshots`
writes docs/asset/console-*.png), else to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_layout
from tests.aws.fixtures import REGION
from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher, chat, stub_llm_env
from tests.stubs.fixtures import LLMStub

playwright = pytest.importorskip("playwright.sync_api")

# tests/conftest.py puts every e2e test in one xdist group: they run one at a time
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN_KEY = "console-admin-key"
KEYS = {"t1": "key-one", "t2": "key-two"}
WAIT_S = 60
T = TypeVar("T")


def ensure_chromium() -> None:
    """Install Debian's chromium if it is missing (scripts/ensure-chromium); skip, saying why,
    only when that cannot be done here."""
    if Path(CHROMIUM).exists():
        return
    script = procs.ROOT / "scripts" / "ensure-chromium"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed and could not be: {done.stderr.strip()[-300:]}")


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that always fails (500) and counts what it was sent."""

    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        type(self).hits.append(self.headers.get("webhook-id", ""))
        self.send_response(500)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()


@dataclass
class Scene:
    """The running service and what the tests act on."""

    api: Api
    admin: Any
    tenants: dict[str, Any]
    failed_job: str
    queued_job: str
    hooked_job: str
    batch_id: str
    shots: Path
    done_jobs: list[str] = field(default_factory=list)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.admin.get(f"/v1/admin/jobs/{job_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def scene(
    module_launcher: Launcher,
    llm_stub_server: LLMStub,
    receiver: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    ensure_chromium()
    stub = llm_stub_server
    stub.reset()
    api = module_launcher.api(
        "api",
        API_KEYS=",".join(f"{t}:{k}" for t, k in KEYS.items()),
        ADMIN_API_KEYS=ADMIN_KEY,
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_RETRY_SCHEDULE="0,0.5",
        WORKER_CONCURRENCY="2",
        LLM_TIMEOUT_S="90",
        WORKER_HEARTBEAT_S="1",
        JOB_RETRY_BASE_S="0.2",  # the hooked job's one retry comes back within 0.2 s
        **stub_llm_env(stub, openrouter=False),
    )
    tenants = {t: api.client(k) for t, k in KEYS.items()}
    admin = api.client(ADMIN_KEY)

    def submit(tenant: str, prompt: str, **fields: Any) -> str:
        response = tenants[tenant].post("/v1/jobs", json=chat(prompt, **fields))
        assert response.status_code in (200, 202), response.text
        job_id: str = response.json()["id"]
        return job_id

    done = [submit(t, f"hello from {t} #{i}") for t in KEYS for i in range(3)]
    until(lambda: all(job_status(admin, j) == "succeeded" for j in done), "the first answers")
    stub.set("gemini", "fail", status=503, times=1)  # one transient error: a retried job
    hooked = submit("t1", "tell my webhook", webhook_url=receiver)
    until(lambda: job_status(admin, hooked) == "succeeded", "the retried job to be answered")
    stub.set("gemini", "fail", status=400, times=1)  # one permanent refusal: a failed job
    failed = submit("t2", "this one is refused")
    until(lambda: job_status(admin, failed) == "failed", "the refused job to fail")
    until(lambda: webhook_state(admin, hooked) == "failed", "the webhook to give up")
    stub.set("gemini", "stall", seconds=600)  # from here on, every LLM call hangs: jobs run long
    batch = tenants["t2"].post(
        "/v1/batches",
        json={"requests": [{"custom_id": f"r{i}", **chat(f"batch line {i}")} for i in range(6)]},
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["id"]
    until(lambda: running_count(admin) == 2, "both workers to be busy with the batch")
    queued = submit("t1", "waits in the queue")
    shots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    yield Scene(api, admin, tenants, failed, queued, hooked, batch_id, shots, done)
    stub.reset()  # let the stalled calls end
    admin.close()
    for client in tenants.values():
        client.close()


def job_status(admin: Any, job_id: str) -> str:
    return str(admin.get(f"/v1/admin/jobs/{job_id}").json()["status"])


def webhook_state(admin: Any, job_id: str) -> str | None:
    hook = admin.get(f"/v1/admin/jobs/{job_id}").json().get("webhook")
    return hook["state"] if hook else None


def running_count(admin: Any) -> int:
    overview = admin.get("/v1/admin/overview").json()
    return int(overview["backlog"]["running"])


@pytest.fixture(scope="module")
def browser(scene: Scene) -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    page: Any
    errors: list[str]


@contextmanager
def signed_in_at(browser: Any, url: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/console/sign-in")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/overview")
    try:
        yield Tab(page, errors)
    finally:
        context.close()


@pytest.fixture
def signed_in(browser: Any, scene: Scene) -> Iterator[Tab]:
    with signed_in_at(browser, scene.api.url) as tab:
        yield tab


def shot(tab: Tab, scene: Scene, name: str) -> None:
    tab.page.screenshot(path=str(scene.shots / f"console-{name}.png"), full_page=True)


def test_sign_in_page(browser: Any, scene: Scene) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 700}, base_url=scene.api.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto("/console/overview")  # signed out: sent to the sign-in
    page.wait_for_url("**/console/sign-in")
    assert page.locator("#key").is_visible()
    page.screenshot(path=str(scene.shots / "console-sign-in.png"), full_page=True)
    assert errors == []
    context.close()


def test_every_page_shows_live_data(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    page.wait_for_selector("[data-testid=worker]")
    assert page.inner_text("[data-testid=running]") == "2"
    assert int(page.inner_text("[data-testid=queued-batch]")) == 4
    assert int(page.inner_text("[data-testid=queued-singles]")) >= 1
    assert "gemini" in page.inner_text("#overview")
    shot(signed_in, scene, "overview")

    page.goto("/console/jobs")
    rows = page.locator("[data-testid=job-row]")
    tenants = {rows.nth(i).get_attribute("data-tenant") for i in range(rows.count())}
    assert tenants == {"t1", "t2"}
    assert page.locator("[data-testid=job-row][data-status=failed]").count() == 1
    shot(signed_in, scene, "jobs")

    page.goto(f"/console/jobs/{scene.hooked_job}")
    assert page.inner_text("[data-testid=webhook-state]") == "failed"
    retried = page.locator("[data-testid=attempt]").all_inner_texts()
    assert len(retried) == 1 and "retrying" in retried[0] and "http_503" in retried[0]
    assert "succeeded" in page.inner_text("[data-testid=attempt-final]")
    codes = page.locator("[data-testid=webhook-attempt]").all_inner_texts()
    assert len(codes) == 2 and all("500" in row for row in codes)
    assert "tell my webhook" in page.inner_text("#job")
    shot(signed_in, scene, "job")

    page.goto("/console/batches")
    row = page.locator(f"[data-batch={scene.batch_id}]")
    assert row.locator("[data-testid=batch-status]").inner_text() == "in_progress"
    assert row.locator("[data-testid=batch-done]").inner_text() == "0 / 6"
    shot(signed_in, scene, "batches")

    page.goto("/console/usage")
    page.wait_for_function("document.querySelectorAll('canvas').length === 4")
    page.wait_for_timeout(300)  # the charts draw once Chart.js has loaded
    assert page.locator("[data-testid=usage-row]").count() >= 1
    shot(signed_in, scene, "usage")

    page.goto("/console/webhooks")
    assert page.locator(f"[data-subject={scene.hooked_job}]").count() == 1
    shot(signed_in, scene, "webhooks")

    page.click("nav >> text=Dead letters")  # embedded: no DLQ, failed jobs are under Jobs
    assert "status=failed" in page.inner_text("[data-testid=no-dead-letter-queues]")
    shot(signed_in, scene, "dead-letters")
    assert signed_in.errors == []


def test_pages_update_without_a_reload(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    before = page.inner_text("[data-testid=hour-jobs]")
    marker = page.evaluate("() => (window.__kept = 'same page')")
    extra = scene.tenants["t2"].post("/v1/jobs", json=chat("one more, while watching"))
    assert extra.status_code == 202
    page.wait_for_function(
        "(before) => document.querySelector('[data-testid=hour-jobs]').innerText !== before",
        arg=before,
        timeout=15_000,
    )
    assert page.evaluate("() => window.__kept") == marker  # htmx swapped a part, no reload
    assert signed_in.errors == []


def test_cancel_a_queued_job_by_clicking(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    page.goto(f"/console/jobs/{scene.queued_job}")
    page.click("text=Cancel job")
    page.wait_for_selector(".notice")
    assert "cancelled" in page.inner_text(".notice")
    assert job_status(scene.admin, scene.queued_job) == "cancelled"
    assert signed_in.errors == []


def test_retry_a_failed_job_by_clicking(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    before = scene.job(scene.failed_job)
    assert before["status"] == "failed" and before["attempts"] == 1
    page.goto(f"/console/jobs/{scene.failed_job}")
    refused = page.locator("[data-testid=attempt][data-outcome=failed]").inner_text()
    assert "llm_rejected" in refused and "gemini" in refused
    page.click("text=Retry job")
    page.wait_for_selector(".notice")
    after = scene.job(scene.failed_job)
    assert after["status"] in ("queued", "running") and after["error"] is None
    assert signed_in.errors == []


def test_redeliver_a_webhook_by_clicking(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    sent = len(Receiver.hits)
    page.goto("/console/webhooks")
    page.locator(f"[data-subject={scene.hooked_job}] button").click()
    page.wait_for_selector(".notice")
    until(lambda: len(Receiver.hits) > sent, "the webhook to be sent again")
    until(lambda: scene.job(scene.hooked_job)["webhook"]["attempts"] == 3, "the third attempt")
    assert Receiver.hits[-1] == Receiver.hits[0]  # the same webhook-id
    assert signed_in.errors == []


def test_cancel_a_running_batch_by_clicking(signed_in: Tab, scene: Scene) -> None:
    page = signed_in.page
    page.goto("/console/batches")
    page.locator(f"[data-batch={scene.batch_id}] button").click()
    page.wait_for_selector(".notice")
    batch = scene.admin.get(f"/v1/admin/batches/{scene.batch_id}").json()
    assert batch["status"] == "cancelling"  # its two running jobs finish first
    assert (batch["counts"]["cancelled"], batch["counts"]["running"]) == (4, 2)
    row = page.locator(f"[data-batch={scene.batch_id}]")
    until(lambda: row.locator("[data-testid=batch-status]").inner_text() == "cancelling", "update")
    assert signed_in.errors == []


def test_a_tenant_key_cannot_sign_in(browser: Any, scene: Scene) -> None:
    context = browser.new_context(base_url=scene.api.url)
    page = context.new_page()
    page.goto("/console/sign-in")
    page.fill("#key", KEYS["t1"])
    with page.expect_response("**/console/sign-in") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 403
    assert "tenant" in page.inner_text("[role=alert]")
    assert context.cookies() == []
    context.close()


def test_a_missing_or_forged_csrf_token_is_refused(signed_in: Tab, scene: Scene) -> None:
    before, sent = scene.job(scene.hooked_job)["webhook"], len(Receiver.hits)
    request = signed_in.page.request  # the browser's own session cookie goes with these
    path = f"/console/webhooks/{scene.hooked_job}/redeliver"
    assert request.post(path).status == 403
    assert request.post(path, form={"csrf_token": "forged"}).status == 403
    assert request.post(path, headers={"X-CSRF-Token": "forged"}).status == 403
    time.sleep(1)  # a delivery that had been let through would have gone out by now
    assert scene.job(scene.hooked_job)["webhook"] == before and len(Receiver.hits) == sent


def test_the_session_cookie_is_httponly_and_strict(signed_in: Tab) -> None:
    cookies = signed_in.page.context.cookies()
    assert [c["name"] for c in cookies] == ["chatjobs_console"]
    assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Strict"
    assert signed_in.page.evaluate("() => document.cookie") == ""  # scripts cannot read it


def test_redrive_a_dead_letter_queue_by_clicking(
    browser: Any, scene: Scene, launcher: Launcher, moto_endpoint: str
) -> None:
    """The AWS layout (moto's server): a message in the jobs queue's DLQ is listed, and a
    click on Redrive moves it back to the jobs queue."""
    layout = aside(aws_layout_with_a_dead_letter(moto_endpoint))
    api = launcher.api(
        "aws-api",
        **layout.env(),
        AWS_ENDPOINT_URL=moto_endpoint,
        API_KEYS="t1:key-one",
        ADMIN_API_KEYS=ADMIN_KEY,
    )
    with signed_in_at(browser, api.url) as tab:
        tab.page.click("nav >> text=Dead letters")
        row = tab.page.locator("[data-testid=dead-letter-row][data-queue=jobs]")
        assert row.locator("[data-testid=dead-letter-depth]").inner_text() == "1"
        shot(tab, scene, "dead-letters-aws")
        row.locator("text=Redrive").click()
        tab.page.wait_for_selector(".notice")
        assert "1 moved" in tab.page.inner_text(".notice")
        assert row.locator("[data-testid=dead-letter-depth]").inner_text() == "0"
        assert tab.errors == []
    assert aside(depth(moto_endpoint, layout.queue_url)) == 1


def aside(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on an event loop of its own thread: Playwright's runs in this one."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


async def aws_layout_with_a_dead_letter(endpoint: str) -> AwsLayout:
    clients = AwsClients(endpoint_url=endpoint, region=REGION)
    try:
        layout = await create_layout(clients, prefix=f"b{uuid.uuid4().hex[:10]}-")
        dlq_url = layout.queue_url + names.DLQ_SUFFIX
        sqs = await clients.client("sqs")
        await sqs.send_message(QueueUrl=dlq_url, MessageBody='{"job_id": "job_gone"}')
    finally:
        await clients.close()
    return layout


async def depth(endpoint: str, queue_url: str) -> int:
    clients = AwsClients(endpoint_url=endpoint, region=REGION)
    try:
        sqs = await clients.client("sqs")
        found = await sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
    finally:
        await clients.close()
    return int(found["Attributes"]["ApproximateNumberOfMessages"])
