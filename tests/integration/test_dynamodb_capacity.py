"""DynamoDB request units per job on the AWS layout: what docs/DEPLOYMENT.md's cost table uses.

The Lambda handlers run single jobs (half with a webhook) and a 100-job batch through moto, with
the traffic model's polls, while tests/aws/capacity.py counts the units each request would be
billed, under the indexes' projections (names.INDEX_PROJECTIONS) and under ALL, the projection
they had before. Run with `-s` to print the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shared.adapters.aws import names
from shared.adapters.aws.setup import AwsLayout
from tests.aws.capacity import ALL, CapacityMeter
from tests.aws.lambda_harness import SqsDriver, api_event, call_api, reset_handlers
from tests.integration.test_aws_lambda import aws_env, layout, prompt
from tests.stubs.webhook_receiver import WebhookReceiver
from worker import lambda_handler as worker_lambda

pytestmark = pytest.mark.integration
__all__ = ["aws_env", "layout"]  # fixtures this module uses

SINGLES = 10
BATCH = 100
# now: the indexes' projections and compressed `data`; before: ALL and `data` as JSON text
PROJECTIONS = {
    "now": (dict(names.INDEX_PROJECTIONS), False),
    "all_compressed": (ALL, False),  # compression alone
    "projected_text": (dict(names.INDEX_PROJECTIONS), True),  # projections alone
    "before": (ALL, True),
}
# A prompt of about 400 characters; the stub LLM answers with it, prefixed.
FILLER = " ".join(
    "Summarise the meeting notes: revenue grew in the third quarter, costs rose with hiring."
    for _ in range(4)
)


@pytest.fixture
def metered(aws_env: AwsLayout) -> Iterator[tuple[CapacityMeter, AwsLayout]]:
    meter = CapacityMeter(PROJECTIONS)
    reset_handlers()  # fresh runtimes open their clients inside the meter
    with meter.attached():
        yield meter, aws_env
    reset_handlers()


def snapshot(meter: CapacityMeter) -> tuple[dict[str, int], float]:
    return dict(meter.wru), meter.rru


def spent(
    meter: CapacityMeter, before: tuple[dict[str, int], float], jobs: int
) -> dict[str, float]:
    wru, rru = before
    per = {label: (meter.wru[label] - wru.get(label, 0)) / jobs for label in PROJECTIONS}
    return per | {"rru": (meter.rru - rru) / jobs}


@pytest.mark.timeout(300)
def test_units_per_job_with_projected_indexes(
    metered: tuple[CapacityMeter, AwsLayout],
) -> None:
    meter, aws_layout = metered
    receiver = WebhookReceiver().start()
    try:
        driver = SqsDriver(aws_layout)
        before = snapshot(meter)
        ids = []
        for n in range(SINGLES):
            hook = {"webhook_url": f"{receiver.base_url}/job"} if n % 2 else {}
            answer = call_api(
                api_event("POST", "/v1/jobs", body=prompt(f"single {n}: {FILLER}", **hook))
            )
            assert answer.status == 202, answer.body
            ids.append(answer.json()["id"])
        driver.drain()
        worker_lambda.scheduled({}, None)  # a sweep, as every minute
        for job_id in ids:  # the long-poll's answer, then one more read
            assert call_api(api_event("GET", f"/v1/jobs/{job_id}", query="wait=5")).status == 200
        assert call_api(api_event("GET", "/v1/jobs", query="limit=20")).status == 200
        single = spent(meter, before, SINGLES)
        assert len([d for d in receiver.deliveries if d.path == "/job"]) == SINGLES // 2

        singles_by_write = dict(meter.breakdown)
        meter.breakdown.clear()
        before = snapshot(meter)
        lines = [
            json.dumps({"custom_id": f"r{n}", **json.loads(prompt(f"b{n}: {FILLER}"))})
            for n in range(BATCH)
        ]
        created = call_api(
            api_event(
                "POST",
                "/v1/batches",
                body="\n".join(lines),
                headers={"content-type": "application/x-ndjson"},
            )
        )
        assert created.status == 202, created.body
        batch_id = created.json()["id"]
        assert driver.drain() == BATCH
        worker_lambda.scheduled({}, None)
        for _ in range(10):
            assert call_api(api_event("GET", f"/v1/batches/{batch_id}")).status == 200
        results = call_api(api_event("GET", f"/v1/batches/{batch_id}/results"))
        assert len(results.body.splitlines()) == BATCH
        batched = spent(meter, before, BATCH)
    finally:
        receiver.stop()
    for label, breakdown in (("single", singles_by_write), ("batch", dict(meter.breakdown))):
        jobs = SINGLES if label == "single" else BATCH
        print(
            f"\n{label} job, units by write:", {k: v / jobs for k, v in sorted(breakdown.items())}
        )
    print(f"\nper single job: {single}\nper batch job: {batched}\ncalls: {dict(meter.calls)}")
    # Together, the two halve the units per job.
    assert single["now"] < 0.6 * single["before"], single
    assert batched["now"] < 0.6 * batched["before"], batched
    # Projections: a batch's counter updates and its jobs' status changes no longer rewrite
    # whole records in the indexes.
    assert batched["now"] < 0.75 * batched["all_compressed"], batched
    # Compression: a job's item (and any index copy) takes fewer started KBs on every write
    # (24.5 against 29.5 units once `unfinished` projected the tenant and priority for lanes).
    assert single["now"] < 0.85 * single["projected_text"], single
