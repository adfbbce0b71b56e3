"""Provider quotas on the AWS layout (docs/adr/0014), through both of its consumers at once on
moto's server: the worker Lambda's handler, fed SQS events built from real ReceiveMessage calls
(tests/aws/lambda_harness.py), and the SQS poller (`QUEUE_BACKEND=sqs python -m worker`'s
`serve`, in a thread). Both count in the one DynamoDB table's quota items; each calls the stub
LLM with its own key ("lambda", "poller"), so the stub's arrival log says who called when.

- GEMINI_RPM=10 and OPENROUTER_RPM=5, 25 jobs: no 60 s window at the stub holds more than
  either quota, every job succeeds with one attempt, the jobs beyond both quotas waited a
  minute, and a Lambda invocation whose jobs had to wait handed them back to SQS (their
  visibility set to the wait: batch item failures) and returned, rather than sleeping.
- A 429 with `Retry-After: 5` met by the Lambda: the poller, holding visible work, calls
  Gemini no sooner than 5 s later.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_layout
from shared.config import Settings
from tests.aws.lambda_harness import API_KEY, SqsDriver, api_event, call_api, reset_handlers
from tests.conftest import make_settings
from tests.integration.test_openai_files import SqsWorker
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

GEMINI_RPM, OPENROUTER_RPM = 10, 5
JOBS = 25
FIRST_INVOCATION = 10  # the Lambda's first batch: SQS's most per receive
PAUSE_S = 5
MINUTE_S = 60.0


@dataclass
class Invocation:
    started: float
    ended: float
    jobs: list[str]
    failed: int


@dataclass
class Lambda:
    """The event source mapping's part, on the normal queue, keeping a log of its invocations."""

    driver: SqsDriver
    url: str
    invocations: list[Invocation] = field(default_factory=list)
    handed_back: dict[str, dict[str, Any]] = field(default_factory=dict)  # the first, as then
    delivered_right_after: list[str] = field(default_factory=list)

    def deliver(self, max_messages: int = 10, wait_s: int = 1) -> Invocation | None:
        messages = self.driver.receive(self.url, max_messages, wait_s)
        if not messages:
            return None
        started = time.time()
        failed = self.driver.invoke(self.url, messages)
        done = Invocation(started, time.time(), [job_of(m) for m in messages], len(failed))
        self.invocations.append(done)
        if failed and not self.handed_back:
            self.handed_back = {
                job_of(m): get_job(job_of(m)) for m in messages if m["MessageId"] in failed
            }
            right_after = self.deliver(wait_s=0)  # SQS hides them: not delivered again
            self.delivered_right_after = right_after.jobs if right_after else []
        return done

    def until_ended(self, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Deliver what comes until every job is terminal; the jobs as the API shows them."""
        deadline, ended = time.monotonic() + timeout_s, {}
        while True:
            self.deliver()
            for job_id in job_ids:
                if job_id not in ended and (job := get_job(job_id))["status"] in TERMINAL:
                    ended[job_id] = job
            if len(ended) == len(job_ids):
                return ended
            assert time.monotonic() < deadline, f"{len(ended)} of {len(job_ids)} jobs ended"


TERMINAL = ("succeeded", "failed", "cancelled")


def job_of(message: dict[str, Any]) -> str:
    return str(json.loads(message["Body"])["job_id"])


def get_job(job_id: str) -> dict[str, Any]:
    answer = call_api(api_event("GET", f"/v1/jobs/{job_id}"))
    assert answer.status == 200, answer.body
    job: dict[str, Any] = answer.json()
    return job


def submit(prompts: list[str]) -> list[str]:
    ids = []
    for text in prompts:
        body = json.dumps({"messages": [{"role": "user", "content": text}]})
        answer = call_api(api_event("POST", "/v1/jobs", body=body))
        assert answer.status == 202, answer.body
        ids.append(answer.json()["id"])
    return ids


def poller_called(stub: LLMStub, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(key == "poller" for p in ("gemini", "openrouter") for _, key in stub.arrivals(p)):
        assert time.monotonic() < deadline, "the poller called no provider"
        time.sleep(0.05)


def most_in_a_window(times: list[float], window_s: float = MINUTE_S) -> int:
    """The most calls any `window_s` window holds (windows starting at each call are enough)."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if s <= t < s + window_s) for s in ordered), default=0)


def made_layout(endpoint: str, secret: dict[str, str]) -> AwsLayout:
    async def make() -> AwsLayout:
        clients = AwsClients(endpoint_url=endpoint, region="us-east-1")
        try:
            return await create_layout(clients, prefix=f"q{uuid.uuid4().hex[:8]}-", secret=secret)
        finally:
            await clients.close()

    return asyncio.run(make())


def poller_settings(
    layout: AwsLayout, endpoint: str, stub: LLMStub, *, openrouter: bool, **quotas: int
) -> Settings:
    """The SQS poller's settings: the Lambda's table and queues, its own LLM keys."""
    keys: dict[str, Any] = {"gemini_api_key": "poller", "gemini_base_url": stub.gemini_base_url}
    if openrouter:
        keys |= {"openrouter_api_key": "poller", "openrouter_base_url": stub.openrouter_base_url}
    return make_settings(
        store_backend="dynamodb",
        queue_backend="sqs",
        cache_backend="dynamodb",
        dynamodb_table=layout.table,
        sqs_queue_url=layout.queue_url,
        sqs_batch_queue_url=layout.batch_queue_url,
        sqs_high_queue_url=layout.high_queue_url,
        sqs_low_queue_url=layout.low_queue_url,
        aws_endpoint_url=endpoint,
        aws_region="us-east-1",
        worker_concurrency=4,
        job_retry_base_s=1,
        llm_timeout_s=10,
        **keys,
        **quotas,
    )


@pytest.fixture
def lambda_env(
    moto_endpoint: str, llm_stub: LLMStub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The Lambda handlers' environment (set per test: a layout, quotas, OpenRouter or not)."""
    base = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "chatjobs-test",
        "GEMINI_BASE_URL": llm_stub.gemini_base_url,
        "OPENROUTER_BASE_URL": llm_stub.openrouter_base_url,
        "RATE_LIMIT": "10000/minute",
        "JOB_RETRY_BASE_S": "1",
    }
    for name in ("API_KEYS", "WEBHOOK_SIGNING_SECRET", "OPENROUTER_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GEMINI_RPM", "GEMINI_TPM", "OPENROUTER_RPM", "OPENROUTER_TPM"):
        monkeypatch.delenv(name, raising=False)

    yield base
    reset_handlers()


def start_layout(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, base: dict[str, str], *, openrouter: bool
) -> AwsLayout:
    secret = {
        "API_KEYS": f"t1:{API_KEY}",
        "WEBHOOK_SIGNING_SECRET": "whsec-master-for-tests",
        "GEMINI_API_KEY": "lambda",
    }
    if openrouter:
        secret["OPENROUTER_API_KEY"] = "lambda"
    layout = made_layout(moto_endpoint, secret)
    for name, value in (base | layout.env()).items():
        monkeypatch.setenv(name, value)
    reset_handlers()
    return layout


@pytest.mark.timeout(240)  # two quota windows by nature: about 70 s
def test_quotas_hold_across_the_lambda_and_the_poller(
    lambda_env: dict[str, str],
    moto_endpoint: str,
    llm_stub: LLMStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_RPM", str(GEMINI_RPM))
    monkeypatch.setenv("OPENROUTER_RPM", str(OPENROUTER_RPM))
    layout = start_layout(moto_endpoint, monkeypatch, lambda_env, openrouter=True)
    job_ids = submit([f"quota question {n}" for n in range(JOBS)])
    lam = Lambda(SqsDriver(layout), layout.queue_url)

    first = lam.deliver(FIRST_INVOCATION)  # the Lambda takes the first slots
    assert first is not None and first.failed == 0
    settings = poller_settings(
        layout,
        moto_endpoint,
        llm_stub,
        openrouter=True,
        gemini_rpm=GEMINI_RPM,
        openrouter_rpm=OPENROUTER_RPM,
    )
    with SqsWorker(settings):  # the poller takes some of the room left, then both wait
        poller_called(llm_stub)
        jobs = lam.until_ended(job_ids, timeout_s=150)

    assert [jobs[job_id]["status"] for job_id in job_ids] == ["succeeded"] * JOBS
    assert {jobs[job_id]["attempts"] for job_id in job_ids} == {1}  # waits spent no attempt
    gemini, openrouter = llm_stub.arrivals("gemini"), llm_stub.arrivals("openrouter")
    assert len(gemini) + len(openrouter) == JOBS  # a call a job: none refused, none repeated
    gemini_most = most_in_a_window([at for at, _ in gemini])
    openrouter_most = most_in_a_window([at for at, _ in openrouter])
    assert gemini_most <= GEMINI_RPM
    assert openrouter_most <= OPENROUTER_RPM
    callers = {key for _, key in gemini + openrouter}
    assert callers == {"lambda", "poller"}, callers  # both consumers ran jobs

    first_call = min(at for at, _ in gemini + openrouter)
    waited = [j for j in jobs.values() if completed_at(j) - first_call >= MINUTE_S]
    assert len(waited) >= JOBS - GEMINI_RPM - OPENROUTER_RPM  # beyond both quotas

    # A Lambda invocation whose jobs could not call a provider gave them back to SQS and
    # returned at once: the jobs' next try was still ahead when it ended (no sleeping).
    gave_back = [i for i in lam.invocations if i.failed]
    assert gave_back, "no Lambda invocation met a full quota"
    held = gave_back[0]
    assert held.ended < first_call + MINUTE_S - 1  # before any slot freed
    for job in lam.handed_back.values():
        assert (job["status"], job["attempts"]) == ("queued", 0), job  # the claim given back
        assert job["error"]["code"] == "retrying", job
        assert "waiting for a provider quota" in job["error"]["message"], job
        next_try = datetime.fromisoformat(job["error"]["message"].rsplit("next try at ", 1)[1][:25])
        assert next_try.timestamp() > held.ended + 10  # the wait is SQS's, not the invocation's
    assert not set(lam.handed_back) & set(lam.delivered_right_after)
    print(
        f"\n{len(gemini)} Gemini and {len(openrouter)} OpenRouter calls for {JOBS} jobs; most in "
        f"any 60 s window: Gemini {gemini_most} (quota {GEMINI_RPM}), OpenRouter "
        f"{openrouter_most} (quota {OPENROUTER_RPM}); in any 61 s window: Gemini "
        f"{most_in_a_window([at for at, _ in gemini], 61)}; calls by consumer: "
        f"{ {c: sum(1 for _, k in gemini + openrouter if k == c) for c in sorted(callers)} }; "
        f"{len(waited)} jobs waited a minute; {len(lam.invocations)} Lambda invocations, "
        f"{len(gave_back)} handed jobs back ({held.failed} of {len(held.jobs)} in "
        f"{held.ended - held.started:.2f} s); last job done "
        f"{max(map(completed_at, jobs.values())) - first_call:.1f} s after the first call"
    )


def test_a_429_met_by_the_lambda_pauses_the_poller(
    lambda_env: dict[str, str],
    moto_endpoint: str,
    llm_stub: LLMStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = start_layout(moto_endpoint, monkeypatch, lambda_env, openrouter=False)
    llm_stub.set("gemini", "rate_limit", retry_after=PAUSE_S, times=1)
    lam = Lambda(SqsDriver(layout), layout.queue_url)
    (met,) = submit(["the one that meets the 429"])
    invocation = lam.deliver()
    assert invocation is not None and invocation.failed == 1  # retried later, attempt spent
    ((rate_limited_at, _),) = llm_stub.arrivals("gemini")

    others = submit([f"after the 429 {n}" for n in range(6)])
    settings = poller_settings(layout, moto_endpoint, llm_stub, openrouter=False)
    with SqsWorker(settings):  # visible work and no quota: only the pause holds it back
        poller_called(llm_stub)
        jobs = lam.until_ended([met, *others], timeout_s=60)

    calls = llm_stub.arrivals("gemini")
    poller_first = min(at for at, key in calls if key == "poller")
    gap = poller_first - rate_limited_at
    assert gap >= PAUSE_S - 0.01, f"the poller called Gemini {gap:.2f} s after the 429"
    assert min(at for at, _ in calls[1:]) - rate_limited_at >= PAUSE_S - 0.01
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    assert jobs[met]["attempts"] == 2  # its call was made (and refused)
    assert {jobs[job_id]["attempts"] for job_id in others} == {1}
    print(
        f"\n429 with Retry-After: {PAUSE_S} met by the Lambda; the poller's first Gemini call "
        f"{gap:.2f} s later; calls by consumer after it: "
        f"{ {k: sum(1 for _, c in calls[1:] if c == k) for k in ('lambda', 'poller')} }"
    )


def completed_at(job: dict[str, Any]) -> float:
    return datetime.fromisoformat(job["completed_at"]).timestamp()
