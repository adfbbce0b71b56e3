"""The `chatjobs` console script against a running API process (embedded mode, stub Gemini)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher
from tests.e2e.services import KEYS, service_env, wait_until
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).with_name("chatjobs")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "api.cli"]


@pytest.fixture(scope="module")
def stub() -> Iterator[LLMStub]:
    started = LLMStub().start()  # the module's own: its state is shared by the module's tests
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(stub: LLMStub, module_launcher: Launcher) -> Api:  # stopped before the stub
    return module_launcher.api(
        **service_env(stub, WORKER_CONCURRENCY="8", WEBHOOK_RETRY_SCHEDULE="0,1")
    )


def chatjobs(
    api: Api, *args: str, key: str = KEYS["t1"], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = procs.child_env(CHATJOBS_URL=api.url, CHATJOBS_API_KEY=key, COLUMNS="120")
    return subprocess.run(
        [*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_submit_wait_prints_the_answer_and_get_shows_the_job(api: Api) -> None:
    done = chatjobs(api, "submit", "hi", "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "gemini says: hi"

    queued = chatjobs(api, "submit", "hello there", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    shown = chatjobs(api, "get", job_id, "--wait", "10")
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert job["id"] == job_id and job["status"] == "succeeded"
    assert job["result"]["content"] == "gemini says: hello there"


def test_webhook_secret_prints_the_tenants_secret(api: Api) -> None:
    printed = chatjobs(api, "webhook-secret")
    assert printed.returncode == 0, printed.stderr
    with api.client(KEYS["t1"]) as http:
        assert printed.stdout.strip() == http.get("/v1/webhook-secret").json()["secret"]
    assert printed.stdout.startswith("whsec_")
    other = chatjobs(api, "webhook-secret", key=KEYS["t2"])
    assert other.stdout.startswith("whsec_") and other.stdout != printed.stdout


def test_batch_wait_shows_progress_and_writes_one_result_per_prompt(
    api: Api, tmp_path: Path
) -> None:
    receiver = WebhookReceiver().start()
    try:
        with api.client(KEYS["t1"]) as http:
            receiver.secret = http.get("/v1/webhook-secret").json()["secret"]
        lines = [json.dumps({"prompt": f"cli prompt {n}"}) for n in range(60)]
        lines[10] = json.dumps(
            {"custom_id": "mine", "messages": [{"role": "user", "content": "cli prompt 10"}]}
        )
        (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")

        ran = chatjobs(
            api,
            "batch", "prompts.jsonl", "--wait", "--out", "r.jsonl", "--poll", "0.2",
            "--webhook-url", receiver.url,
            cwd=tmp_path,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "60 requests" in ran.stderr
        assert "ok 60" in ran.stderr and "failed 0" in ran.stderr  # the progress bar's counts
        assert "wrote 60 results to r.jsonl" in ran.stderr

        results = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
        expected_ids = [f"line-{n + 1}" for n in range(60)]
        expected_ids[10] = "mine"
        assert [r["custom_id"] for r in results] == expected_ids
        for n, result in enumerate(results):
            assert result["status"] == "succeeded"
            assert result["result"]["content"] == f"gemini says: cli prompt {n}"

        [delivery] = wait_until(receiver.received, bool, timeout=10, what="batch.completed")
        assert delivery.verified and delivery.payload["type"] == "batch.completed"
        assert delivery.payload["data"]["counts"]["succeeded"] == 60
    finally:
        receiver.stop()


def test_batch_without_wait_prints_the_batch(api: Api, tmp_path: Path) -> None:
    (tmp_path / "one.jsonl").write_text(json.dumps({"prompt": "just one"}) + "\n")
    ran = chatjobs(api, "batch", str(tmp_path / "one.jsonl"))
    assert ran.returncode == 0, ran.stderr
    batch = json.loads(ran.stdout)
    assert batch["object"] == "batch" and batch["counts"]["total"] == 1


def test_errors_exit_2_with_a_message(api: Api, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"custom_id": "[x]", "messages": []}\n')
    refused = chatjobs(api, "batch", str(bad))
    assert refused.returncode == 2
    assert "HTTP 422" in refused.stderr and "line 2" in refused.stderr
    assert "[x]" in refused.stderr  # server text is printed as is, not read as markup

    not_json = tmp_path / "not.jsonl"
    not_json.write_text("{nope\n")
    assert "not JSON" in chatjobs(api, "batch", str(not_json)).stderr

    missing = chatjobs(api, "batch", str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr

    unauthorised = chatjobs(api, "get", "job_x", key="wrong")
    assert unauthorised.returncode == 2 and "HTTP 401" in unauthorised.stderr
    unknown = chatjobs(api, "get", "job_x")
    assert unknown.returncode == 2 and "HTTP 404" in unknown.stderr
    nobody = f"http://127.0.0.1:{procs.free_port()}"
    unreachable = chatjobs(api, "--base-url", nobody, "webhook-secret")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
