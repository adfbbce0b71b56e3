"""The `chatjobs` console script against a running API process (embedded mode, stub Gemini)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher, chat
from tests.e2e.services import KEYS, service_env, wait_batch, wait_until
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).with_name("chatjobs")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "chatjobs_cli"]


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
    api: Api, *args: str, key: str = KEYS["t1"], cwd: Path | None = None, columns: str = "120"
) -> subprocess.CompletedProcess[str]:
    env = procs.child_env(CHATJOBS_URL=api.url, CHATJOBS_API_KEY=key, COLUMNS=columns)
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


def openai_line(custom_id: str, prompt: str, **body: object) -> str:
    message = {"role": "user", "content": prompt}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gemini-2.5-flash", "messages": [message], **body}}
    )  # fmt: skip


def test_openai_batch_uploads_runs_follows_and_saves_its_files(api: Api, tmp_path: Path) -> None:
    lines = [openai_line(f"q{n}", f"openai cli {n}") for n in range(30)]
    lines[7] = openai_line("q7", "openai cli 7", max_tokens=1.5)  # refused: not an integer
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    refused = chatjobs(api, "openai-batch", "in.jsonl", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "line 8: body.max_tokens" in refused.stderr and "(invalid_request)" in refused.stderr

    lines[7] = openai_line("q7", "openai cli 7")
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    ran = chatjobs(
        api,
        "openai-batch", "in.jsonl", "--wait", "--poll", "0.2", "--out", "out.jsonl",
        "--errors", "errors.jsonl",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "30 requests" in ran.stderr and "ok 30" in ran.stderr  # the progress bar's counts
    batch = json.loads(ran.stdout)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 30
    assert not (tmp_path / "errors.jsonl").exists()  # no error file: nothing failed
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["custom_id"] for row in rows] == [f"q{n}" for n in range(30)]
    assert rows[3]["response"]["body"]["choices"][0]["message"]["content"] == (
        "gemini says: openai cli 3"
    )
    again = chatjobs(api, "openai-file", batch["output_file_id"], "--out", "copy.jsonl",
                     cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "copy.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()
    other = chatjobs(api, "openai-file", batch["output_file_id"], "--out", "x", key=KEYS["t2"],
                     cwd=tmp_path)  # fmt: skip
    assert other.returncode == 3 and "HTTP 404" in other.stderr


def test_batch_without_wait_prints_the_batch(api: Api, tmp_path: Path) -> None:
    (tmp_path / "one.jsonl").write_text(json.dumps({"prompt": "just one"}) + "\n")
    ran = chatjobs(api, "batch", str(tmp_path / "one.jsonl"))
    assert ran.returncode == 0, ran.stderr
    batch = json.loads(ran.stdout)
    assert batch["object"] == "batch" and batch["counts"]["total"] == 1


def test_list_pages_through_cursors_and_filters(api: Api) -> None:
    with api.client(KEYS["t2"]) as http:
        submitted = [http.post("/v1/jobs", json=chat(f"listed {n}")).json()["id"] for n in range(5)]
        api.wait_terminal(submitted, timeout=20, client=http)
        everything = http.get("/v1/jobs", params={"limit": 100}).json()["data"]
    newest_first = [job["id"] for job in everything]
    assert newest_first[:5] == submitted[::-1]

    first = chatjobs(api, "list", "--limit", "2", "--json", key=KEYS["t2"])
    assert first.returncode == 0, first.stderr
    assert [json.loads(line)["id"] for line in first.stdout.splitlines()] == newest_first[:2]
    assert "--cursor" in first.stderr  # where the next page starts
    cursor = first.stderr.split("--cursor", 1)[1].split()[0]
    second = chatjobs(api, "list", "--limit", "2", "--cursor", cursor, "--json", key=KEYS["t2"])
    assert [json.loads(line)["id"] for line in second.stdout.splitlines()] == newest_first[2:4]

    every = chatjobs(api, "list", "--limit", "2", "--all", "--json", key=KEYS["t2"])
    assert every.returncode == 0, every.stderr
    assert [json.loads(line)["id"] for line in every.stdout.splitlines()] == newest_first
    assert "--cursor" not in every.stderr

    table = chatjobs(api, "list", "--status", "succeeded", "--all", key=KEYS["t2"])
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "BATCH", "CUSTOM_ID"]
    assert [row.split()[0] for row in rows] == newest_first
    assert all(row.split()[1] == "succeeded" for row in rows)
    none = chatjobs(api, "list", "--status", "cancelled", "--json", key=KEYS["t2"])
    assert none.returncode == 0 and none.stdout == ""


def test_the_next_page_cursor_is_printed_on_one_line(api: Api) -> None:
    """stderr is not a terminal here and 40 columns wide: the cursor must still copy whole."""
    with api.client(KEYS["t2"]) as http:
        ids = [http.post("/v1/jobs", json=chat(f"paged {n}")).json()["id"] for n in range(2)]
        api.wait_terminal(ids, timeout=20, client=http)
        expected = http.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]
    first = chatjobs(api, "list", "--limit", "1", "--json", key=KEYS["t2"], columns="40")
    assert first.returncode == 0, first.stderr
    assert f"more jobs: --cursor {expected} (or --all)" in first.stderr.splitlines()


def test_cancel_a_job_and_a_batch_then_list_and_fetch_results(
    api: Api, stub: LLMStub, tmp_path: Path
) -> None:
    prompts = tmp_path / "slow.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"slow {n}"}) + "\n" for n in range(24)))
    # 8 workers busy, the other 16 jobs stay queued for as long as four CLI runs take on a busy
    # machine (each starts a Python process)
    stub.set("gemini", "stall", seconds=9)  # under the API's LLM_TIMEOUT_S (10 s)
    try:
        submitted = chatjobs(api, "batch", str(prompts))
        assert submitted.returncode == 0, submitted.stderr
        batch_id = json.loads(submitted.stdout)["id"]
        queued = chatjobs(api, "list", "--batch", batch_id, "--status", "queued", "--json")
        job_id = json.loads(queued.stdout.splitlines()[0])["id"]  # the newest: run last

        cancelled = chatjobs(api, "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["status"] == "cancelled"
        again = chatjobs(api, "cancel", job_id)  # already terminal: 409
        assert again.returncode == 3 and "HTTP 409" in again.stderr

        batch = chatjobs(api, "cancel", "--batch", batch_id)
        assert batch.returncode == 0, batch.stderr
        assert json.loads(batch.stdout)["status"] in ("cancelling", "cancelled")
    finally:
        stub.reset()
    with api.client(KEYS["t1"]) as http:
        done = wait_batch(http, batch_id, timeout=40)
    assert done["counts"]["cancelled"] >= 2

    listed = chatjobs(api, "list", "--batch", batch_id, "--status", "cancelled", "--all", "--json")
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert job_id in ids and len(ids) == done["counts"]["cancelled"]

    printed = chatjobs(api, "results", batch_id)
    assert printed.returncode == 0, printed.stderr
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"line-{n + 1}" for n in range(24)]
    assert sum(line["status"] == "cancelled" for line in lines) == done["counts"]["cancelled"]

    saved = chatjobs(api, "results", batch_id, "--out", "r.ndjson", cwd=tmp_path)
    assert saved.returncode == 0 and saved.stdout == ""
    assert "wrote 24 results to r.ndjson" in saved.stderr
    assert (tmp_path / "r.ndjson").read_text() == printed.stdout


def test_batches_lists_retry_failed_reruns_and_delete_erases(
    api: Api, stub: LLMStub, tmp_path: Path
) -> None:
    (tmp_path / "two.jsonl").write_text(
        "".join(json.dumps({"prompt": f"rerun {n}"}) + "\n" for n in range(2))
    )
    (tmp_path / "one.jsonl").write_text(json.dumps({"prompt": "an older batch"}) + "\n")
    assert chatjobs(api, "batch", "one.jsonl", cwd=tmp_path).returncode == 0
    stub.set("gemini", "fail", status=400)  # refused: the jobs fail at once
    try:
        ran = chatjobs(api, "batch", "two.jsonl", "--wait", cwd=tmp_path)
        assert ran.returncode == 1, ran.stderr  # the batch had failed jobs
    finally:
        stub.reset()
    listed = chatjobs(api, "batches", "--limit", "1", "--json")
    assert listed.returncode == 0, listed.stderr
    (newest,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert newest["counts"]["failed"] == 2 and newest["status"] == "completed"
    assert "--cursor" in listed.stderr and "\n" not in listed.stderr.strip()  # one line
    table = chatjobs(api, "batches", "--limit", "1")
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "DONE", "FAILED"]
    assert row.split()[0] == newest["id"] and row.split()[-2:] == ["2/2", "2"]

    retried = chatjobs(api, "retry-failed", newest["id"])
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["counts"]["failed"] == 0
    with api.client(KEYS["t1"]) as http:
        done = wait_batch(http, newest["id"], timeout=20)
        assert done["counts"]["succeeded"] == 2
        job_id = http.get("/v1/jobs", params={"batch_id": newest["id"]}).json()["data"][0]["id"]
    erased = chatjobs(api, "delete", job_id)
    assert erased.returncode == 0 and f"deleted {job_id}" in erased.stderr
    gone = chatjobs(api, "delete", job_id)
    assert gone.returncode == 3 and "HTTP 404" in gone.stderr


def test_version_and_help_name_the_environment_and_exit_codes(api: Api) -> None:
    shown = chatjobs(api, "--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"chatjobs {version('chatjobs')}"
    helped = chatjobs(api, "--help")
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "CHATJOBS_URL" in text and "CHATJOBS_API_KEY" in text
    for code in ("0 ok", "2 usage error", "3 HTTP error", "4 server unreachable", "5 --wait"):
        assert code in text


def test_usage_errors_exit_2(api: Api, tmp_path: Path) -> None:
    for args in (["nope"], ["get"], ["list", "--limit", "0"], ["list", "--status", "done"]):
        ran = chatjobs(api, *args)
        assert ran.returncode == 2, (args, ran.stderr)
        assert "Error" in ran.stderr and "Traceback" not in ran.stderr

    not_json = tmp_path / "not.jsonl"
    not_json.write_text("{nope\n")
    refused = chatjobs(api, "batch", str(not_json))
    assert refused.returncode == 2 and "not JSON" in refused.stderr
    missing = chatjobs(api, "batch", str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_http_errors_exit_3(api: Api, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"custom_id": "[x]", "messages": []}\n')
    refused = chatjobs(api, "batch", str(bad))
    assert refused.returncode == 3
    assert "HTTP 422" in refused.stderr and "line 2" in refused.stderr
    assert "[x]" in refused.stderr  # server text is printed as is, not read as markup

    unauthorised = chatjobs(api, "get", "job_x", key="wrong")
    assert unauthorised.returncode == 3 and "HTTP 401" in unauthorised.stderr
    unknown = chatjobs(api, "get", "job_x")
    assert unknown.returncode == 3 and "HTTP 404" in unknown.stderr
    no_batch = chatjobs(api, "results", "batch_x", "--out", "never.ndjson", cwd=tmp_path)
    assert no_batch.returncode == 3 and "HTTP 404" in no_batch.stderr
    assert not (tmp_path / "never.ndjson").exists()


def test_unreachable_server_exits_4(api: Api) -> None:
    nobody = f"http://127.0.0.1:{procs.free_port()}"
    for args in (["webhook-secret"], ["list"], ["submit", "hi", "--wait"]):
        ran = chatjobs(api, "--base-url", nobody, *args)
        assert ran.returncode == 4, (args, ran.stderr)
        assert f"cannot reach {nobody}" in ran.stderr and "Traceback" not in ran.stderr
        assert ran.stdout == ""


def test_a_wait_that_runs_out_exits_5(api: Api, stub: LLMStub, tmp_path: Path) -> None:
    stub.set("gemini", "stall", seconds=6)  # far longer than the waits below
    try:
        submitted = chatjobs(api, "submit", "slow answer", "--wait", "--timeout", "1")
        assert submitted.returncode == 5, submitted.stderr
        job = json.loads(submitted.stdout)
        assert job["status"] in ("queued", "running")

        polled = chatjobs(api, "get", job["id"], "--wait", "1")
        assert polled.returncode == 5, polled.stderr
        assert json.loads(polled.stdout)["status"] in ("queued", "running")
        assert chatjobs(api, "get", job["id"]).returncode == 0  # no --wait: just a look

        (tmp_path / "slow.jsonl").write_text(json.dumps({"prompt": "slow batch"}) + "\n")
        batch = chatjobs(api, "batch", "slow.jsonl", "--wait", "--timeout", "1", cwd=tmp_path)
        assert batch.returncode == 5, batch.stderr
        assert "still in_progress" in batch.stderr
    finally:
        stub.reset()
    finished = chatjobs(api, "get", job["id"], "--wait", "10")
    assert finished.returncode == 0 and json.loads(finished.stdout)["status"] == "succeeded"


USAGE_FIELDS = (
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
)


def test_usage_renders_the_table_and_json_and_names_a_bad_parameter(api: Api) -> None:
    for prompt in ("usage one", "usage two", "usage one"):  # the third is a cache hit
        ran = chatjobs(api, "submit", prompt, "--wait", key=KEYS["t2"])
        assert ran.returncode == 0, ran.stderr
    as_json = chatjobs(api, "usage", "--json", key=KEYS["t2"])
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    (row,) = report["data"]
    assert row["group"] == report["to"] and report["group_by"] == "day"
    assert row["requests"] >= 3 and row["cache_hits"] >= 1

    table = chatjobs(api, "usage", key=KEYS["t2"])
    assert table.returncode == 0, table.stderr
    assert f"usage {report['from']} to {report['to']} by day" in table.stdout
    lines = [line.split() for line in table.stdout.splitlines()]
    assert ["day", "requests", "succeeded", "failed", "cancelled", "cache", "hits"] in [
        line[:7] for line in lines
    ]
    (cells,) = [line[1:] for line in lines if line[:1] == [row["group"]]]
    shown = ["-" if row[field] is None else f"{row[field]:,}" for field in USAGE_FIELDS]
    assert cells == shown
    assert ["total", f"{row['requests']:,}"] in [line[:2] for line in lines]

    by_provider = chatjobs(api, "usage", "--group-by", "provider", key=KEYS["t2"])
    assert by_provider.returncode == 0, by_provider.stderr
    providers = {line[0] for line in map(str.split, by_provider.stdout.splitlines()) if line}
    assert {"gemini", "cache"} <= providers

    for args, field in (
        (["--from", "2024-03-02", "--to", "2024-03-01"], "from (2024-03-02) is after to"),
        (["--from", "2023-01-01", "--to", "2024-06-01"], "at most 366"),
        (["--to", "2024-02-30"], "to:"),
    ):
        refused = chatjobs(api, "usage", *args)
        assert refused.returncode == 3, (args, refused.stderr)
        assert "HTTP 422" in refused.stderr and field in " ".join(refused.stderr.split())
    unknown = chatjobs(api, "usage", "--group-by", "week")
    assert unknown.returncode == 2 and "--group-by" in unknown.stderr
