"""Run-time API keys on both stores, each behind two API instances that share it (two API
processes, or two Lambda containers on AWS): the embedded layout (one SQLite file) and the AWS
one (moto's DynamoDB, SQS). A key made through one instance works on both; revoked, the other
refuses it within KEY_CACHE_TTL_S; rotated with a grace, its old secret works until the grace
ends, then nowhere; no secret is anywhere in the store (the SQLite file's bytes, every
DynamoDB item); and a budget of 50 requests takes exactly 50 of 200 concurrent submits spread
over both instances, 429 `budget_exceeded` for the rest."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_layout
from shared.config import Settings
from tests.conftest import make_settings
from tests.http_burst import burst, check_budget_refusals
from tests.serving import ServedApi

pytestmark = pytest.mark.integration

ADMIN = "layouts-admin-key"
TTL_S = 1.0
GRACE_S = 2
MARGIN_S = 4.0
SUBMITS = 200
BUDGET = 50


@dataclass(frozen=True)
class Layout:
    name: str
    urls: tuple[str, str]
    settings: Settings
    sqlite_path: Path | None = None

    def use(self, n: int, secret: str) -> tuple[float, int]:
        """(when it was sent, status) of a request with `secret` to instance `n`."""
        sent = time.monotonic()
        with httpx.Client(base_url=self.urls[n], timeout=30) as http:
            status = http.get("/v1/jobs", params={"limit": 1}, headers=bearer(secret)).status_code
        assert status in (200, 401), status
        return sent, status

    def read(self, n: int, path: str, secret: str) -> dict[str, Any]:
        """GET `path` from instance `n` with `secret`: a success, as JSON."""
        with httpx.Client(base_url=self.urls[n], timeout=30) as http:
            response = http.get(path, headers=bearer(secret))
        assert response.is_success, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def admin(self, path: str, body: Any = None) -> dict[str, Any]:
        with httpx.Client(base_url=self.urls[0], timeout=30) as http:
            if body is None and path == "/v1/admin/keys":
                response = http.get(path, headers=bearer(ADMIN))
            else:
                response = http.post(path, json=body, headers=bearer(ADMIN))
        assert response.is_success, response.text
        answer: dict[str, Any] = response.json()
        return answer


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def base(**overrides: Any) -> Settings:
    return make_settings(api_keys="t1:k1", admin_api_keys=ADMIN, key_cache_ttl_s=TTL_S, **overrides)


def aws_layout_now(endpoint: str) -> AwsLayout:
    async def make() -> AwsLayout:
        clients = AwsClients(endpoint_url=endpoint, region="us-east-1")
        try:
            return await create_layout(clients, prefix=f"k{uuid.uuid4().hex[:8]}-")
        finally:
            await clients.close()

    return asyncio.run(make())


@pytest.fixture(scope="module", params=["embedded", "aws"])
def layout(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Layout]:
    folder = tmp_path_factory.mktemp("keys")
    if request.param == "embedded":
        path = folder / "chatjobs.db"
        settings = base(sqlite_path=str(path), files_dir=str(folder / "files"))
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        aws = aws_layout_now(endpoint)
        path = None
        settings = base(
            store_backend="dynamodb",
            queue_backend="sqs",
            cache_backend="dynamodb",
            dynamodb_table=aws.table,
            sqs_queue_url=aws.queue_url,
            sqs_batch_queue_url=aws.batch_queue_url,
            aws_endpoint_url=endpoint,
            aws_region="us-east-1",
            files_backend="none",
            sqlite_path=str(folder / "unused.db"),
        )
    with ServedApi(settings) as one, ServedApi(settings) as two:
        yield Layout(request.param, (one.url, two.url), settings, path)


def make_key(layout: Layout, name: str) -> dict[str, Any]:
    return layout.admin("/v1/admin/keys", {"tenant": "acme", "name": name, "priority": "low"})


def test_a_key_works_on_both_instances_until_revoked(layout: Layout) -> None:
    made = make_key(layout, "revoke me")
    secret = made["key"]
    assert [layout.use(n, secret)[1] for n in (0, 1)] == [200, 200]
    layout.admin(f"/v1/admin/keys/{made['id']}/revoke")
    revoked = time.monotonic()
    assert layout.use(0, secret)[1] == 401  # where it was revoked: at once
    tries = [layout.use(1, secret)]
    while tries[-1][1] == 200 and time.monotonic() < revoked + TTL_S + MARGIN_S:
        tries.append(layout.use(1, secret))
    assert tries[-1][1] == 401, "the other instance still accepts a revoked key"
    assert all(sent < revoked + TTL_S for sent, status in tries if status == 200)
    print(f"\n{layout.name}: the other instance refused the revoked key from "
          f"{time.monotonic() - revoked:.3f} s after the revocation")  # fmt: skip
    listed = layout.admin("/v1/admin/keys")
    [shown] = [k for k in listed["data"] if k["id"] == made["id"]]
    assert shown["status"] == "revoked" and shown["last_used_at"] is not None


def test_a_rotated_secret_works_during_its_grace_only(layout: Layout) -> None:
    made = make_key(layout, "rotate me")
    old = made["key"]
    assert [layout.use(n, old)[1] for n in (0, 1)] == [200, 200]
    asked = time.monotonic()
    new = layout.admin(f"/v1/admin/keys/{made['id']}/rotate", {"grace_period_s": GRACE_S})["key"]
    answered = time.monotonic()
    assert [layout.use(n, new)[1] for n in (0, 1)] == [200, 200]
    seen: dict[int, list[tuple[float, int]]] = {0: [], 1: []}
    while time.monotonic() < answered + GRACE_S + TTL_S + MARGIN_S:
        for n in (0, 1):
            if not seen[n] or seen[n][-1][1] == 200:
                seen[n].append(layout.use(n, old))
        if all(tries[-1][1] == 401 for tries in seen.values()):
            break
    for n, tries in seen.items():
        assert tries[0][1] == 200 and tries[-1][1] == 401, (n, tries[0], tries[-1])
        assert all(status == 200 for sent, status in tries if sent < asked)  # none, but be exact
        bound = answered + GRACE_S + (TTL_S if n else 0)
        assert all(status == 401 for sent, status in tries if sent >= bound)
    assert [layout.use(n, new)[1] for n in (0, 1)] == [200, 200]


def test_no_secret_is_anywhere_in_the_store(layout: Layout) -> None:
    made = [make_key(layout, f"stored {n}") for n in range(3)]
    secrets = [k["key"] for k in made]
    secrets.append(layout.admin(f"/v1/admin/keys/{made[1]['id']}/rotate", {})["key"])
    for secret in secrets:
        assert layout.use(1, secret)[1] == 200
    stored = stored_bytes(layout)
    assert made[0]["id"].encode() in stored and made[0]["prefix"].encode() in stored
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret[11:].encode() not in stored  # what the shown prefix leaves out


def stored_bytes(layout: Layout) -> bytes:
    """The SQLite file (with its WAL), or every item of the DynamoDB table (a Scan: the test's
    own read, never the product's)."""
    if layout.sqlite_path is not None:
        path = layout.sqlite_path
        return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))
    s = layout.settings
    ddb = boto3.client("dynamodb", endpoint_url=s.aws_endpoint_url, region_name=s.aws_region)
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=s.dynamodb_table):
        items.extend(page["Items"])
    assert any(item["pk"]["S"].startswith("APIKEYHASH#") for item in items)
    return json.dumps(items).encode()


def test_a_budget_of_50_takes_exactly_50_of_200_through_both_instances(layout: Layout) -> None:
    """Issue 16's budget through HTTP on each layout: the key made through the admin API, 200
    concurrent submits spread over the two instances (two API processes; two Lambda
    containers), one counter in the store (SQLite; DynamoDB)."""
    limits = {"monthly_requests": BUDGET}
    made = layout.admin("/v1/admin/keys", {"tenant": "budgeted", "name": "fifty", "limits": limits})
    started = datetime.now(UTC)

    answers = burst(layout.urls, made["key"], SUBMITS, question)

    accepted = [a for a in answers if a.accepted]
    refused = [a for a in answers if not a.accepted]
    split = Counter(a.api for a in accepted)
    print(f"\n{layout.name}: {len(accepted)} accepted ({split[0]}/{split[1]} by instance), "
          f"{len(refused)} refused")  # fmt: skip
    assert (len(accepted), len(refused)) == (BUDGET, SUBMITS - BUDGET)
    check_budget_refusals(refused, f"monthly_requests budget of {BUDGET} requests", started)
    for n in (0, 1):  # each instance reads the one counter, with what the key's jobs hold
        usage = layout.read(n, f"/v1/admin/keys/{made['id']}", ADMIN)["usage"]
        assert (usage["month"], usage["requests"]) == (started.strftime("%Y-%m"), BUDGET), usage
    stored = layout.read(1, "/v1/jobs?limit=100", made["key"])
    assert sorted(j["id"] for j in stored["data"]) == sorted(a.body["id"] for a in accepted)


def question(n: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"layout budget question {n}"}]}
