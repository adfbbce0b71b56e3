"""DynamoDbRateWindow on moto's server: one budget per tenant, shared by Lambda containers.

Each "container" has its own AwsClients and its own DynamoDbRateWindow; only the table is shared.
A settable clock puts the requests at known points of the window (no boundary races).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.ratelimit import TenantRateLimiter
from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.ratelimit.dynamodb import DynamoDbRateWindow, retry_after_s

pytestmark = pytest.mark.integration

MINUTE_START = 1_800_000_000  # a whole minute
REGION = "us-east-1"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(MINUTE_START + 10)


@pytest.fixture
async def containers(
    moto_endpoint: str, aws_layout: AwsLayout, clock: Clock
) -> AsyncIterator[list[DynamoDbRateWindow]]:
    clients = [AwsClients(endpoint_url=moto_endpoint, region=REGION) for _ in range(2)]
    # a generous deadline: these tests are about counting, not about a loaded machine
    yield [DynamoDbRateWindow(c, aws_layout.table, timeout_s=10, clock=clock) for c in clients]
    for c in clients:
        await c.close()


async def test_two_containers_share_one_budget(containers: list[DynamoDbRateWindow]) -> None:
    first, second = containers
    answers = [await (first, second)[n % 2].hit("tenant_a", 5, 60) for n in range(6)]
    assert answers[:5] == [(True, 0)] * 5
    allowed, retry_after = answers[5]
    assert not allowed and retry_after > 0
    # 50 s to the window's end, then 12 s until 5 requests weigh less than 4 in the sliding minute
    assert retry_after == 62
    assert await second.hit("tenant_b", 5, 60) == (True, 0)  # each tenant has its own budget


async def test_the_previous_window_still_weighs_half_way_through_the_next(
    containers: list[DynamoDbRateWindow], clock: Clock
) -> None:
    first, second = containers
    for _ in range(5):
        assert (await first.hit("tenant_a", 5, 60))[0]
    clock.now = MINUTE_START + 60 + 30  # half the previous minute is still in the window
    assert await second.hit("tenant_a", 5, 60) == (True, 0)
    assert await first.hit("tenant_a", 5, 60) == (True, 0)
    assert await second.hit("tenant_a", 5, 60) == (False, 6)  # at 36 s: 5 x 24 / 60 = 2, room 3
    clock.now += 6
    assert await second.hit("tenant_a", 5, 60) == (True, 0)


async def test_refused_requests_are_not_counted(
    containers: list[DynamoDbRateWindow], clock: Clock
) -> None:
    first, _ = containers
    for _ in range(3):
        await first.hit("tenant_a", 2, 60)
    clock.now = MINUTE_START + 60 + 59  # the previous window counted 2 requests, not 3
    assert await first.hit("tenant_a", 2, 60) == (True, 0)


async def test_a_test_sees_the_other_containers_hits_and_spends_nothing(
    containers: list[DynamoDbRateWindow], clock: Clock
) -> None:
    first, second = containers
    assert await second.test("auth:203.0.113.9", 2, 60) == (True, 0)
    for _ in range(2):
        assert (await first.hit("auth:203.0.113.9", 2, 60))[0]
    # at 10 s: the window's end, then until 2 fade below 1 (30 s)
    assert await second.test("auth:203.0.113.9", 2, 60) == (False, 80)
    assert await first.hit("auth:203.0.113.9", 2, 60) == (False, 80)  # as a hit answers
    assert await second.test("auth:203.0.113.10", 2, 60) == (True, 0)
    clock.now = MINUTE_START + 60 + 59  # 2 x 1 / 60 of the previous window still weighs: 1
    assert await second.test("auth:203.0.113.9", 2, 60) == (True, 0)
    assert await first.hit("auth:203.0.113.9", 2, 60) == (True, 0)  # the tests took no room
    assert (await second.test("auth:203.0.113.9", 2, 60))[0] is False


async def test_window_items_expire_after_serving_as_the_previous_window(
    containers: list[DynamoDbRateWindow], aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    await containers[0].hit("tenant_a", 5, 60)
    ddb = await aws_clients.client("dynamodb")
    key = {"pk": {"S": "RATE#tenant_a"}, "sk": {"S": str(MINUTE_START)}}
    item = (await ddb.get_item(TableName=aws_layout.table, Key=key))["Item"]
    assert item["count"] == {"N": "1"}
    assert int(item[names.TTL_ATTRIBUTE]["N"]) > MINUTE_START + 120


async def test_tenant_rate_limiter_answers_from_the_shared_window(
    containers: list[DynamoDbRateWindow],
) -> None:
    limiters = [TenantRateLimiter("5/minute", window) for window in containers]
    waits = [await limiters[n % 2].hit("tenant_a") for n in range(6)]
    assert waits[:5] == [None] * 5
    assert waits[5] == 62.0


async def test_tenant_rate_limiter_fails_open_when_the_table_is_missing(
    aws_clients: AwsClients,
) -> None:
    limiter = TenantRateLimiter("1/minute", DynamoDbRateWindow(aws_clients, "no-such"))
    assert [await limiter.hit("tenant_a") for _ in range(3)] == [None] * 3


@pytest.mark.parametrize(
    ("elapsed", "previous", "current", "expected"),
    [
        (10, 0, 5, 62),  # a full window: its end, then until 5 fade below 4
        (30, 5, 2, 6),  # room later in this window as the previous one fades
        (59.5, 0, 5, 13),
        (0, 10, 0, 36),  # only the previous window weighs, until 10 x (60 - 36) / 60 = 4
    ],
)
def test_retry_after(elapsed: float, previous: int, current: int, expected: int) -> None:
    assert retry_after_s(5, 60, elapsed, previous, current) == expected
