"""DynamoDB request units per job on the AWS layout: what docs/DEPLOYMENT.md's cost table uses.

The Lambda handlers run single jobs (half with a webhook) and a 100-job batch through moto, with
the traffic model's polls, while tests/aws/capacity.py counts the units each request would be
billed, under the indexes' projections (names.INDEX_PROJECTIONS) and under ALL with records as
JSON text, the layout before docs/adr/0016. The workload runs once with a bootstrap key
(API_KEYS) and once with a key made at run time with every limit set (rpm, tpm, max_in_flight,
monthly budgets), whose counters move in the jobs' own writes. Prompts and answers are about 400
characters of prose each, the answer not an echo of the prompt, so records compress as real
ones do. Run with `-s` to print the figures.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shared.adapters.aws import names
from shared.adapters.aws.setup import AwsLayout
from tests.aws.capacity import ALL, CapacityMeter, item_size
from tests.aws.lambda_harness import API_KEY, SqsDriver, api_event, call_api, reset_handlers
from tests.integration.test_aws_lambda import aws_env, layout, prompt
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver
from worker import lambda_handler as worker_lambda

pytestmark = pytest.mark.integration
__all__ = ["aws_env", "layout"]  # fixtures this module uses

SINGLES = 10
BATCH = 100
ADMIN_KEY = "capacity-admin-key"
# now: the indexes' projections and compressed `data`; before: ALL and `data` as JSON text
PROJECTIONS = {
    "now": (dict(names.INDEX_PROJECTIONS), False),
    "before": (ALL, True),
}
# The figures docs/DEPLOYMENT.md's table uses (write units per job): a change that makes a job
# cost more fails here, and the page must say so. The console's by_day index (ADR 0017) adds one
# unit per job (its keys-only entry, written once: status changes leave it alone), and worker
# heartbeats and a run-time key's last-used stamp about 0.1 a single job.
SINGLE_WRU = {"bootstrap": 22.6, "runtime": 35.6}
BATCH_WRU = {"bootstrap": 30.1, "runtime": 38.2}
KEY_LIMITS = {
    "rpm": 6000,
    "tpm": 10_000_000,
    "max_in_flight": 1000,
    "monthly_requests": 1_000_000,
    "monthly_tokens": 100_000_000,
}
# About 400 characters each, as in the traffic model; each job's prompt gets its own prefix.
PROMPT = (
    "Please summarise these notes for the team: third-quarter revenue rose by eight percent, "
    "driven mostly by renewals in the northern region, while hiring for the support desk "
    "pushed operating costs above plan. Marketing asks to move the spring campaign to April. "
    "Legal flagged two contracts that still lack signatures. List the three decisions we need "
    "this week and who owns each."
)
ANSWER = (
    "Three decisions are due this week. First, approve the April date for the spring campaign; "
    "marketing owns it and needs a yes by Wednesday. Second, chase the two unsigned contracts "
    "before the quarter closes; legal owns this and should escalate to the account leads. "
    "Third, decide whether the support hires stay within the revised budget; finance and the "
    "support lead own that review together."
)


@dataclass
class Spent:
    wru: dict[str, float]  # per job, by projection
    rru: float  # per job
    writes: dict[str, float]  # units per job, by write (the first projection)


@pytest.fixture
def metered(
    aws_env: AwsLayout, llm_stub: LLMStub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CapacityMeter, AwsLayout]]:
    monkeypatch.setenv("ADMIN_API_KEYS", ADMIN_KEY)
    monkeypatch.setenv("KEY_HASH_SECRET", "capacity-key-hash-secret-of-32-characters")
    llm_stub.set("gemini", "ok", answer=ANSWER)
    meter = CapacityMeter(PROJECTIONS)
    reset_handlers()  # fresh runtimes open their clients inside the meter
    with meter.attached():
        yield meter, aws_env
    reset_handlers()


def measured(meter: CapacityMeter, since: tuple[dict[str, int], float, int], jobs: int) -> Spent:
    wru, rru, first_write = since
    by_write: Counter[str] = Counter()
    for operation, pk, _, factor, parts in meter.writes[first_write:]:
        kind = pk.split("#", 1)[0]
        for part, units in parts.items():
            by_write[f"{operation} {kind} {part}"] += factor * units
    return Spent(
        {label: (meter.wru[label] - wru.get(label, 0)) / jobs for label in PROJECTIONS},
        (meter.rru - rru) / jobs,
        {name: units / jobs for name, units in sorted(by_write.items())},
    )


def mark(meter: CapacityMeter) -> tuple[dict[str, int], float, int]:
    return dict(meter.wru), meter.rru, len(meter.writes)


def workload(
    meter: CapacityMeter, driver: SqsDriver, receiver: WebhookReceiver, key: str, label: str
) -> tuple[Spent, Spent]:
    """The traffic model's jobs with `key`: SINGLES singles (half with a webhook), each
    long-polled and read once more, then one BATCH-job batch polled 10 times and downloaded."""
    since = mark(meter)
    ids = []
    for n in range(SINGLES):
        hook = {"webhook_url": f"{receiver.base_url}/job"} if n % 2 else {}
        body = prompt(f"{label} single {n}: {PROMPT}", **hook)
        answer = call_api(api_event("POST", "/v1/jobs", body=body, key=key))
        assert answer.status == 202, answer.body
        ids.append(answer.json()["id"])
    driver.drain()
    worker_lambda.scheduled({}, None)  # a sweep, as every minute
    for job_id in ids:  # the long-poll's answer, then one more read
        polled = call_api(api_event("GET", f"/v1/jobs/{job_id}", query="wait=5", key=key))
        assert polled.status == 200 and polled.json()["status"] == "succeeded", polled.body
    assert call_api(api_event("GET", "/v1/jobs", query="limit=20", key=key)).status == 200
    single = measured(meter, since, SINGLES)

    since = mark(meter)
    lines = [
        json.dumps({"custom_id": f"r{n}", **json.loads(prompt(f"{label} b{n}: {PROMPT}"))})
        for n in range(BATCH)
    ]
    created = call_api(
        api_event(
            "POST",
            "/v1/batches",
            body="\n".join(lines),
            headers={"content-type": "application/x-ndjson"},
            key=key,
        )
    )
    assert created.status == 202, created.body
    batch_id = created.json()["id"]
    assert driver.drain() == BATCH
    worker_lambda.scheduled({}, None)
    for _ in range(10):
        assert call_api(api_event("GET", f"/v1/batches/{batch_id}", key=key)).status == 200
    results = call_api(api_event("GET", f"/v1/batches/{batch_id}/results", key=key))
    assert len(results.body.splitlines()) == BATCH
    return single, measured(meter, since, BATCH)


# Writes made per interval rather than per job: workers' heartbeats, a key's last-used stamp.
TIMED_WRITES = (" WORKERS ", " APIKEY ")


def timed_writes(spent: Spent) -> float:
    return sum(
        units
        for write, units in spent.writes.items()
        if any(kind in write for kind in TIMED_WRITES)
    )


def per_job(spent: Spent) -> float:
    """The job's own write units, at today's projections, without the timed writes."""
    return round(spent.wru["now"] - timed_writes(spent), 2)


def largest_job_item(meter: CapacityMeter) -> int:
    return max(item_size(item) for (pk, _), item in meter.table.items() if pk.startswith("JOB#"))


@pytest.mark.timeout(600)
def test_units_per_job_with_a_bootstrap_key_and_a_limited_run_time_key(
    metered: tuple[CapacityMeter, AwsLayout],
) -> None:
    meter, aws_layout = metered
    made = call_api(
        api_event(
            "POST",
            "/v1/admin/keys",
            body=json.dumps({"tenant": "t1", "name": "capacity", "limits": KEY_LIMITS}),
            key=ADMIN_KEY,
        )
    )
    assert made.status == 201, made.body
    receiver = WebhookReceiver().start()
    try:
        driver = SqsDriver(aws_layout)
        spent = {
            "bootstrap": workload(meter, driver, receiver, API_KEY, "bootstrap"),
            "runtime": workload(meter, driver, receiver, made.json()["key"], "runtime"),
        }
        assert len([d for d in receiver.deliveries if d.path == "/job"]) == SINGLES
    finally:
        receiver.stop()
    for caller, (single, batched) in spent.items():
        for kind, figures in (("single", single), ("batch", batched)):
            print(f"\n{caller} key, per {kind} job: WRU {figures.wru}, RRU {figures.rru:.2f}")
            for write, units in figures.writes.items():
                print(f"  {write}: {units:.2f}")
    biggest = largest_job_item(meter)
    print(f"\nlargest job item: {biggest} bytes; calls: {dict(meter.calls)}")

    # A finished job with its ~400-character prompt and answer, its webhook's state and its
    # index keys stays within one 1 KB write unit (a preset dictionary, no copies of `data`).
    assert biggest <= 1024
    # Heartbeats and last-used stamps are written per interval, not per job: their share depends
    # on how long the workload took, so it is bounded apart from the jobs' own writes.
    for caller, (single, batched) in spent.items():
        assert per_job(single) <= SINGLE_WRU[caller], (caller, single)
        assert per_job(batched) <= BATCH_WRU[caller], (caller, batched)
        assert timed_writes(single) <= 0.5 and timed_writes(batched) <= 0.5, (caller, spent)
    # Projections and packed records: about half the units of ALL and JSON text (a key's
    # counter items are small either way).
    for figures in spent["bootstrap"]:
        assert figures.wru["now"] < 0.55 * figures.wru["before"], figures
    # A run-time key with every limit: its rpm window, month and in-flight counters at admission,
    # then its usage row, month, in-flight and minute counters in the job's last transaction.
    bootstrap, runtime = spent["bootstrap"], spent["runtime"]
    assert per_job(runtime[0]) - per_job(bootstrap[0]) <= 13
