"""Every shell command in README.md and docs/ runs as written, or is listed here as not run.

Commands live in ```sh blocks. Each block is either run by a test below (`RUN`) or named in
`NOT_RUN` with the reason; a block that is neither fails `test_every_shell_block_is_run_or_listed`.
A block is known by the first line of its first command.

The README walk-through runs twice: against `python -m api` in embedded mode (no API keys, the
offline provider, a free port), and against what `make aws-local` starts (DynamoDB, SQS and Secrets
Manager on moto, the API and an SQS-polling worker). In both, `http://127.0.0.1:8000` becomes that
port, `CHATJOBS_URL` points the `chatjobs` command at it, and the placeholders `job_…` / `batch_…`
become the ids the walk-through made. Commands run one by one, in order, in a scratch directory
(the heredoc writes prompts.jsonl there), with `uv` offline and frozen on this project. A comment
under a command is what the README shows it printing, and each check below compares with it; `exit
N` in a command's comment is the exit status it must end with (otherwise 0).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.key_usage import next_month
from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher
from tests.e2e.services import wait_batch, wait_until
from tests.tools import find_uv

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README, TESTING, DEPLOYMENT = "README.md", "docs/TESTING.md", "docs/DEPLOYMENT.md"
PERFORMANCE = "docs/PERFORMANCE.md"
DOC_URL = "http://127.0.0.1:8000"
SHELL_FENCES = frozenset({"sh", "bash", "shell"})
COMMAND_TIMEOUT_S = 60

# The blocks the tests below run, by document and the start of their first line.
SUBMIT = "curl -si http://127.0.0.1:8000/v1/jobs "
POLL = "curl -s 'http://127.0.0.1:8000/v1/jobs/job_5f0c…?wait=10'"
SECRET = "curl -s http://127.0.0.1:8000/v1/webhook-secret"
BATCH = "cat > prompts.jsonl <<'EOF'"
BATCH_FOLLOW = "curl -s http://127.0.0.1:8000/v1/batches/batch_9a…"
USAGE = "curl -s 'http://127.0.0.1:8000/v1/usage?group_by=provider'"
CLI = "uv run chatjobs submit "
BUDGET_MAKE = 'curl -s http://127.0.0.1:8000/v1/admin/keys -H "Authorization: Bearer $ADMIN"'
BUDGET_SPEND = "for n in 1 2 3 4; do curl "
BUDGET_SEE = "curl -s http://127.0.0.1:8000/v1/admin/keys/key_7c1e…"
ONE_TEST = "uv run pytest tests/unit/test_service.py -k cache_key"
COUNT = "uv run pytest --collect-only -q tests/unit | tail -1"
RUN = {
    README: (
        SUBMIT,
        POLL,
        SECRET,
        BATCH,
        BATCH_FOLLOW,
        USAGE,
        CLI,
        BUDGET_MAKE,
        BUDGET_SPEND,
        BUDGET_SEE,
    ),
    TESTING: (ONE_TEST, COUNT),
}

_AWS = "needs an AWS account and credentials"
NOT_RUN = {
    README: {
        "make run ": "serves until Ctrl-C; the walk-through starts the command it runs, "
        "`python -m api`, itself (test_make_run_serves_python_m_api)",
        "export REDIS_URL=": "needs a Redis on 127.0.0.1:6379 and leaves workers running; "
        "tests/e2e/test_redis_workers.py runs this layout (the API and two `python -m worker`) "
        "on a Valkey of its own",
        "docker compose up": "needs Docker; tests/unit/test_deploy_files.py checks "
        "docker-compose.yml and the Dockerfile",
        "make aws-local": "serves until Ctrl-C; test_readme_walk_through[aws-local] runs the "
        "walk-through against the program it starts, `python -m shared.adapters.aws.local`",
        "export ADMIN=": "needs ADMIN_API_KEYS, which the walk-through's keyless service has "
        "not; tests/e2e/test_api_keys_e2e.py and tests/unit/test_admin_keys_api.py make, list, "
        "rotate and revoke keys through the same requests",
    },
    DEPLOYMENT: {
        "export AWS_REGION=": f"{_AWS}, and `terraform init` downloads the AWS provider",
        "terraform apply -var image_tag=$TAG \\": f"creates AWS resources: {_AWS}",
        "umask 077": f"writes the production secret to Secrets Manager: {_AWS}",
        "for f in chatjobs-api": f"updates deployed Lambda functions: {_AWS}",
        "cd ../..": f"builds with Docker and pushes to ECR: {_AWS}",
        "cd infra/terraform": f"applies the whole stack: {_AWS}",
        "API=$(terraform output": "smoke-tests a deployed stack (its URL and a real key)",
        "aws sqs start-message-move-task": f"replays a deployed DLQ: {_AWS}",
        "aws logs tail": f"tails deployed CloudWatch logs: {_AWS}",
        "terraform apply -var image_tag=$TAG -var table_deletion_protection=false": "destroys a "
        f"deployed stack: {_AWS}",
        "aws secretsmanager delete-secret": f"deletes a deployed secret and registry: {_AWS}",
    },
    PERFORMANCE: {
        "make bench ": "about 3 minutes of load on every core; not part of `make test`, as the "
        "issue asks (run by hand for docs/PERFORMANCE.md)",
    },
    TESTING: {
        "make test ": "runs the suite itself, this test included",
        "REDIS_URL=redis://127.0.0.1:6379/15": "needs a Redis server of your own on port 6379",
        "uv run python -m tests.stubs.llm_server": "serves until Ctrl-C; tests start the stub "
        "themselves (tests/stubs/fixtures.py)",
    },
}


# --- the documents' shell blocks ------------------------------------------------------------


@dataclass
class Command:
    text: str  # as written: with its continuation lines and heredoc
    shows: list[str] = field(default_factory=list)  # the comment lines under it

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]

    @property
    def expected_exit(self) -> int:
        found = re.search(r"#.*\bexit (\d+)", self.first_line)
        return int(found.group(1)) if found else 0

    def shown(self, text: str) -> str:
        """`text`, after checking that the document shows it under this command."""
        assert text in "\n".join(self.shows), f"the document no longer shows {text!r}"
        return text


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str

    @property
    def commands(self) -> list[Command]:
        return split_commands(self.text)

    @property
    def key(self) -> str:
        return self.commands[0].first_line if self.commands else ""


FENCE = re.compile(r"^```(\S*)\s*$")
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def documents() -> list[str]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [d.relative_to(ROOT).as_posix() for d in docs]


@cache
def fenced_blocks(doc: str) -> tuple[Block, ...]:
    lines = (ROOT / doc).read_text().splitlines()
    found, n = [], 0
    while n < len(lines):
        fence = FENCE.match(lines[n])
        if fence is None:
            n += 1
            continue
        end = next(i for i in range(n + 1, len(lines)) if lines[i].startswith("```"))
        found.append(Block(doc, n + 2, fence.group(1), "\n".join(lines[n + 1 : end])))
        n = end + 1
    return tuple(found)


def shell_blocks() -> list[Block]:
    return [b for doc in documents() for b in fenced_blocks(doc) if b.lang in SHELL_FENCES]


def split_commands(text: str) -> list[Command]:
    """Commands as a shell reads them (`\\` continuations, heredocs), each with the comment
    lines that follow it."""
    lines, n = text.splitlines(), 0
    commands: list[Command] = []
    while n < len(lines):
        line = lines[n].strip()
        n += 1
        if not line:
            continue
        if line.startswith("#"):
            if commands:
                commands[-1].shows.append(line.lstrip("#").strip())
            continue
        parts = [line]
        while parts[-1].endswith("\\") and n < len(lines):
            parts.append(lines[n])
            n += 1
        heredoc = HEREDOC.search(line)
        if heredoc:
            while n < len(lines):
                parts.append(lines[n])
                n += 1
                if parts[-1].strip() == heredoc.group(1):
                    break
        commands.append(Command("\n".join(parts)))
    return commands


def block(doc: str, key: str) -> Block:
    (found,) = [b for b in shell_blocks() if b.doc == doc and b.key.startswith(key)]
    return found


# --- running them -----------------------------------------------------------------------------


class Shell:
    """Runs documented commands with bash: the doc's base URL and placeholders rewritten, `uv`
    on PATH (offline, frozen, on this project), and nothing of the developer's settings."""

    def __init__(self, cwd: Path, bin_dir: Path, base_url: str = DOC_URL) -> None:
        uv = find_uv()
        if uv is None:
            pytest.fail("uv is needed to run the documents' `uv run` commands")
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed: the README's commands use it")
        bin_dir.mkdir(exist_ok=True)
        shim = bin_dir / "uv"
        shim.write_text(f'#!/bin/sh\nexec {shlex.join(uv)} "$@"\n')
        shim.chmod(0o755)
        self.cwd, self.base_url = cwd, base_url
        self.ids: dict[str, str] = {}
        self.env = procs.child_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            UV_PROJECT=str(ROOT),
            UV_FROZEN="1",
            UV_OFFLINE="1",
            CHATJOBS_URL=base_url,
        )
        self.env.pop("CHATJOBS_API_KEY", None)

    def rewrite(self, text: str) -> str:
        text = text.replace(DOC_URL, self.base_url)
        text = re.sub(r"\b(job|batch|key)_\w*…", lambda m: self.ids[m.group(1)], text)
        assert "…" not in text, f"a placeholder this test cannot fill: {text}"
        return text

    def run(self, command: Command | str) -> subprocess.CompletedProcess[str]:
        text = command.text if isinstance(command, Command) else command
        expected = command.expected_exit if isinstance(command, Command) else 0
        ran = subprocess.run(
            ["bash", "-o", "pipefail", "-c", self.rewrite(text)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert ran.returncode == expected, (
            f"{text}\nexited {ran.returncode}, not {expected}\n{ran.stdout}\n{ran.stderr}"
        )
        return ran


def json_values(output: str) -> list[Any]:
    """Every JSON value in `output`: curl prints one answer after another with no newline."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(output, at)) < len(output):
        value, at = decoder.raw_decode(output, at)
        values.append(value)
    return values


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def http_answer(output: str) -> tuple[str, dict[str, str], Any]:
    """`curl -si` output → status line, headers (lower-case names), JSON body."""
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    status, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status, headers, json.loads(body)


def prose(doc: str) -> str:
    """The document's text with its line breaks folded, to find a phrase that wraps."""
    return " ".join((ROOT / doc).read_text().split())


# --- the tests ----------------------------------------------------------------------------------


def test_every_shell_block_is_run_or_listed() -> None:
    seen: dict[tuple[str, str], list[Block]] = {}
    unlisted = []
    for found in shell_blocks():
        keys = [*RUN.get(found.doc, ()), *NOT_RUN.get(found.doc, {})]
        matches = [k for k in keys if found.key.startswith(k)]
        if len(matches) != 1:
            unlisted.append(f"{found.doc}:{found.line}: {found.key!r} (matches {matches})")
        for key in matches:
            seen.setdefault((found.doc, key), []).append(found)
    assert not unlisted, "run these blocks in a test here, or list them in NOT_RUN:\n" + "\n".join(
        unlisted
    )
    listed = {(doc, key) for doc, keys in RUN.items() for key in keys}
    listed |= {(doc, key) for doc, keys in NOT_RUN.items() for key in keys}
    stale = sorted(listed - set(seen))
    assert not stale, f"listed here, but no such block in the documents: {stale}"
    assert all(reason for reasons in NOT_RUN.values() for reason in reasons.values())


def test_make_run_serves_python_m_api() -> None:
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")},
    )  # run from `make test` too, where make would add "Leaving directory" lines
    recipe = [line for line in dry.stdout.splitlines() if not line.startswith("make")]
    assert recipe[-1].endswith("python -m api")


@pytest.fixture(scope="module", params=["embedded", "aws-local"])
def served(request: pytest.FixtureRequest, module_launcher: Launcher) -> Api:
    """The walk-through's server: `make run`'s, and `make aws-local`'s (DynamoDB, SQS and Secrets
    Manager on moto, an SQS-polling worker) — the README says it works unchanged on both."""
    if request.param == "embedded":
        return module_launcher.api("docs-api")
    return module_launcher.aws_local("docs-aws-local")


@pytest.fixture
def shell(served: Api, tmp_path: Path) -> Iterator[Shell]:
    work = tmp_path / "work"
    work.mkdir()
    yield Shell(work, tmp_path / "bin", served.url)


@pytest.mark.timeout(90)
def test_readme_walk_through(shell: Shell, served: Api) -> None:
    # Submit, then poll.
    (submit,) = block(README, SUBMIT).commands
    status, headers, job = http_answer(shell.run(submit).stdout)
    assert status == submit.shown("HTTP/1.1 202 Accepted")
    assert headers["location"] == f"/v1/jobs/{job['id']}" and submit.shown("location: /v1/jobs/")
    assert headers["retry-after"] == "1" and submit.shown("retry-after: 1")
    assert job["status"] == "queued" and submit.shown('"status": "queued"')
    assert job["cached"] is False and submit.shown('"cached": false')
    shell.ids["job"] = job["id"]

    (poll,) = block(README, POLL).commands
    (done,) = json_values(shell.run(poll).stdout)
    assert done["id"] == job["id"]
    assert done["status"] == "succeeded" and poll.shown('"status": "succeeded"')
    assert done["attempts"] == 1 and poll.shown('"attempts": 1')
    for key in ("content", "provider", "model", "usage", "latency_ms"):
        assert key in done["result"] and poll.shown(f'"{key}"')
    assert done["result"]["provider"] == "offline"  # the README shows Gemini's answer

    # The same prompt again: from the cache, a job of its own.
    text = prose(README)
    assert 'answered from the cache with `200` and `"cached": true`' in text
    assert "recorded as a job of its own" in text
    status, _, again = http_answer(shell.run(submit).stdout)
    assert status == "HTTP/1.1 200 OK"
    assert again["cached"] is True and again["status"] == "succeeded"
    assert again["id"] != job["id"]

    # Delete: "erases a finished job and its result (`204`)".
    assert "`DELETE /v1/jobs/{id}` erases a finished job and its result (`204`)" in text
    erase = f"curl -s -o /dev/null -w '%{{http_code}}' -XDELETE {DOC_URL}/v1/jobs/{again['id']}"
    assert shell.run(erase).stdout == "204"
    gone = f"curl -s -o /dev/null -w '%{{http_code}}' {DOC_URL}/v1/jobs/{again['id']}"
    assert shell.run(gone).stdout == "404"

    # Cancel: "a running or finished one answers `409`".
    assert "`POST /v1/jobs/{id}/cancel` cancels a queued job" in text
    assert "a running or finished one answers `409`" in text
    cancel = f"curl -s -o /dev/null -w '%{{http_code}}' -XPOST {DOC_URL}/v1/jobs/{job['id']}/cancel"
    assert shell.run(cancel).stdout == "409"

    # The webhook secret, and the README's snippet verifying a delivery signed with it.
    (secret_command,) = block(README, SECRET).commands
    (answer,) = json_values(shell.run(secret_command).stdout)
    assert answer["secret"].startswith("whsec_") and secret_command.shown('{"secret": "whsec_')
    verify_snippet(answer["secret"])

    # A batch from the NDJSON heredoc.
    write, post = block(README, BATCH).commands
    assert shell.run(write).stdout == ""
    (batch,) = json_values(shell.run(post).stdout)
    assert batch["counts"]["total"] == 2 and post.shown('"total": 2')
    assert batch["status"] in ("in_progress", "completed") and post.shown('"in_progress"')
    shell.ids["batch"] = batch["id"]
    with served.client() as http:
        wait_batch(http, batch["id"], timeout=20)

    # List, as the walk-through's prose writes it, for this batch.
    listing = "GET /v1/jobs?status=queued&batch_id=…&limit=20"
    assert f"`{listing}` pages newest first" in text
    query = listing.removeprefix("GET ").replace("…", batch["id"])
    (page,) = json_values(shell.run(f"curl -s '{DOC_URL}{query}'").stdout)
    assert page == {"data": [], "next_cursor": None}  # every job of the batch has run

    get, results, cancel_batch, listing_batches, retry = block(README, BATCH_FOLLOW).commands
    (got,) = json_values(shell.run(get).stdout)
    assert got["status"] == "completed" and got["counts"]["succeeded"] == 2
    lines = json_values(shell.run(results).stdout)
    assert [line["custom_id"] for line in lines] == ["q1", "q2"]
    assert all(line["status"] == "succeeded" and line["result"] for line in lines)
    assert results.shown('{"custom_id": "q1", "job_id": "job_')
    assert results.shown('"status": "succeeded", "result": {')
    (after_cancel,) = json_values(shell.run(cancel_batch).stdout)
    assert after_cancel["error"]["code"] == "conflict"  # it has ended: 409, as for a job
    assert "can no longer be cancelled" in after_cancel["error"]["message"]

    # The batch among the caller's batches, and retry-failed: nothing had failed.
    (batches,) = json_values(shell.run(listing_batches).stdout)
    assert batches["data"][0] == got and batches["next_cursor"] is None
    (retried,) = json_values(shell.run(retry).stdout)
    assert retried == got  # "none failed here: unchanged"

    # Usage: one job from the LLM, its cache hit, then the batch's two.
    (usage,) = block(README, USAGE).commands
    (report,) = json_values(shell.run(usage).stdout)
    assert report["group_by"] == "provider" and usage.shown('"group_by": "provider"')
    cache, offline = report["data"]
    assert cache["group"] == "cache" and usage.shown('{"group": "cache", "requests": 1,')
    assert (cache["requests"], cache["cache_hits"], cache["llm_calls"]) == (1, 1, 0)
    assert usage.shown('"cache_hits": 1') and usage.shown('"llm_calls": 0')
    assert offline["group"] == "offline"  # the README shows Gemini's
    assert (offline["requests"], offline["llm_calls"], offline["cache_hits"]) == (3, 3, 0)
    assert usage.shown('"requests": 3') and usage.shown('"llm_calls": 3')
    assert "**LLM calls the cache saved**" in text

    # The `chatjobs` command: every line, with the exit status its comment names.
    for command in block(README, CLI).commands:
        ran = shell.run(command)
        check_cli(shell, shlex.split(command.text, comments=True)[3:], ran)


def verify_snippet(secret: str) -> None:
    """README's Python verification snippet, run on a delivery signed as the service signs."""
    from standardwebhooks import WebhookVerificationError

    from shared.webhooks import signed_headers

    (snippet,) = [b for b in fenced_blocks(README) if b.lang == "python" and "verify" in b.text]
    body = json.dumps({"type": "job.succeeded", "data": {"id": "job_1"}})
    headers = signed_headers(secret, "msg_docs", body, datetime.now(UTC))
    names: dict[str, Any] = {"secret": secret, "request_body": body, "request_headers": headers}
    exec(snippet.text, names)
    assert names["event"] == json.loads(body)
    names["request_body"] = body.replace("job_1", "job_2")
    with pytest.raises(WebhookVerificationError):  # "raises if forged or stale"
        exec(snippet.text, names)


def check_cli(shell: Shell, args: list[str], ran: subprocess.CompletedProcess[str]) -> None:
    """What each `chatjobs` line of the README says it does."""
    name = args[0]
    if name == "submit":
        assert ran.stdout.startswith("[offline]")  # the answer
    elif name == "get":
        assert json.loads(ran.stdout)["id"] == shell.ids["job"]
    elif name == "list":
        header, *rows = ran.stdout.splitlines()
        assert header.startswith("ID") and 1 <= len(rows) <= 5
        assert all(" succeeded " in row for row in rows)
    elif name == "cancel":  # the job and the batch have both ended by then
        assert "HTTP 409" in ran.stderr
    elif name == "batch":
        written = (shell.cwd / "results.jsonl").read_text().splitlines()
        assert [json.loads(line)["custom_id"] for line in written] == ["q1", "q2"]
    elif name == "results":
        lines = [json.loads(line) for line in ran.stdout.splitlines()]
        assert [line["custom_id"] for line in lines] == ["q1", "q2"]
    elif name == "webhook-secret":
        assert ran.stdout.startswith("whsec_")
    elif name == "usage":
        assert "by provider" in ran.stdout and "cache hits" in ran.stdout
        assert any(line.split()[:1] == ["total"] for line in ran.stdout.splitlines())
    elif name == "batches":
        header, *rows = ran.stdout.splitlines()
        assert header.startswith("ID") and shell.ids["batch"] in [r.split()[0] for r in rows]
    elif name == "retry-failed":
        assert json.loads(ran.stdout)["id"] == shell.ids["batch"]
    elif name == "delete":
        assert ran.stderr.strip() == f"deleted {shell.ids['job']}"
    elif name == "--version":
        assert ran.stdout.startswith("chatjobs ")
    else:
        pytest.fail(f"a `chatjobs {name}` line this test does not check yet")


@pytest.mark.timeout(90)
def test_testing_md_commands(tmp_path: Path) -> None:
    shell = Shell(ROOT, tmp_path / "bin")  # from the repository root, as the page says
    for command in block(TESTING, ONE_TEST).commands:
        assert re.search(r"\b1 passed\b", shell.run(command).stdout)
    (count,) = block(TESTING, COUNT).commands
    assert re.match(r"\d+ tests collected\b", shell.run(count).stdout)


BUDGET_ADMIN = "docs-budget-admin"


@pytest.fixture
def budget_api(launcher: Launcher) -> Api:
    """The budget walk-through's server: embedded, with an admin key and no tenant keys."""
    return launcher.api("docs-budgets", ADMIN_API_KEYS=BUDGET_ADMIN)


@pytest.mark.timeout(120)
def test_readme_budget_walk_through(budget_api: Api, tmp_path: Path) -> None:
    """README's walk-through of a key with a budget: made, spent, refused, and its usage."""
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(work, tmp_path / "bin", budget_api.url)
    shell.env["ADMIN"] = BUDGET_ADMIN  # "with `ADMIN` set to a key of `ADMIN_API_KEYS`"

    (make,) = block(README, BUDGET_MAKE).commands
    (made,) = json_values(shell.run(make).stdout)
    assert made["limits"]["monthly_requests"] == 3 and make.shown('"monthly_requests": 3')
    usage = made["usage"]
    assert (usage["requests"], usage["tokens"], usage["in_flight"]) == (0, 0, None)
    assert make.shown('"requests": 0, "tokens": 0') and make.shown('"in_flight": null')
    assert made["key"].startswith(made["prefix"]) and make.shown('"key": "ck_Q8aTn2Lw')
    assert "Put the secret in `KEY` (`export KEY=ck_" in prose(README)
    shell.env["KEY"], shell.ids["key"] = made["key"], made["id"]

    spend, over = block(README, BUDGET_SPEND).commands
    assert shell.run(spend).stdout.split() == spend.shown("202 202 202 429").split()
    status, headers, answer = http_answer(shell.run(over).stdout)
    assert status == over.shown("HTTP/1.1 429 Too Many Requests")
    assert int(headers["retry-after"]) > 0 and over.shown("retry-after: ")
    error = answer["error"]
    assert error["code"] == "budget_exceeded" and over.shown('"code": "budget_exceeded"')
    resets = next_month(datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    assert f"it resets at {resets}" in error["message"] and over.shown("it resets at")
    assert over.shown("this key's monthly_requests budget of 3") in error["message"]

    with budget_api.client(made["key"]) as http:  # the three jobs have run
        wait_until(
            lambda: http.get("/v1/jobs", params={"status": "succeeded"}).json()["data"],
            lambda done: len(done) == 3,
            30,
            "the walk-through's three jobs succeeded",
        )
    read, report, listing = block(README, BUDGET_SEE).commands
    (key,) = json_values(shell.run(read).stdout)
    assert (key["usage"]["requests"], key["usage"]["in_flight"]) == (3, None)
    assert read.shown('"requests": 3, "tokens": ')
    (rows,) = json_values(shell.run(report).stdout)
    [row] = rows["data"]
    assert (row["group"], row["requests"], row["succeeded"]) == (made["id"], 3, 3)
    assert report.shown('"group": "key_7c1e…", "requests": 3, "succeeded": 3')
    assert key["usage"]["tokens"] == row["input_tokens"] + row["output_tokens"]
    header, line = shell.run(listing).stdout.splitlines()
    assert header.split()[4:7] == listing.shown("REQUESTS  TOKENS  IN FLIGHT").split()[:3]
    assert line.split()[0] == made["id"] and "3/3" in line.split() and listing.shown("3/3")


def test_http_answer_parses_curl_output() -> None:
    status, headers, body = http_answer('HTTP/1.1 200 OK\r\nA: b\r\n\r\n{"x": 1}')
    assert (status, headers, body) == ("HTTP/1.1 200 OK", {"a": "b"}, {"x": 1})
    assert json_values('{"a": 1}{"b": 2}\n{"c": 3}\n') == [{"a": 1}, {"b": 2}, {"c": 3}]
