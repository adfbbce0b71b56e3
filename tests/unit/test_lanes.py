"""The order of lanes on plain data (shared/lanes.py `Turns`), and the SQS poller's ranked slots."""

from __future__ import annotations

import asyncio

import pytest

from shared.adapters.queue.sqs import decode, decode_lane, encode
from shared.lanes import DEFAULT_LANE, Lane, Turns, current_lane, delivering
from worker.ranked_slots import RankedSlots


def drain(turns: Turns) -> list[str]:
    return [turns.take()[0] for _ in range(len(turns))]


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        pytest.param(
            [("single", "n1", Lane("normal", "A")), ("single", "h1", Lane("high", "B"))],
            ["h1", "n1"],
            id="high before normal",
        ),
        pytest.param(
            [("batch", ["l1", "l2"], Lane("low", "A")), ("single", "n1", Lane("normal", "A"))],
            ["n1", "l1", "l2"],
            id="a normal single before a low batch",
        ),
        pytest.param(
            [("batch", ["h1"], Lane("high", "A")), ("single", "n1", Lane("normal", "A"))],
            ["h1", "n1"],
            id="a high batch job before a normal single",
        ),
        pytest.param(
            [("batch", ["b1"], Lane("normal", "B")), ("single", "s1", Lane("normal", "A"))],
            ["s1", "b1"],
            id="singles before batch jobs within a priority",
        ),
        pytest.param(
            [
                ("single", "a1", Lane("normal", "A")),
                ("single", "a2", Lane("normal", "A")),
                ("single", "b1", Lane("normal", "B")),
            ],
            ["a1", "b1", "a2"],
            id="tenants' singles in turn",
        ),
        pytest.param(
            [
                ("batch", ["a1", "a2", "a3"], Lane("normal", "A")),
                ("batch", ["x1", "x2"], Lane("normal", "A")),
                ("batch", ["b1", "b2"], Lane("normal", "B")),
            ],
            ["a1", "b1", "x1", "b2", "a2", "x2", "a3"],
            id="tenants in turn, then each tenant's batches",
        ),
    ],
)
def test_turns(queued: list[tuple[str, object, Lane]], expected: list[str]) -> None:
    turns = Turns()
    for n, (kind, jobs, lane) in enumerate(queued):
        if kind == "single":
            turns.put_single(str(jobs), lane)
        else:
            assert isinstance(jobs, list)
            turns.put_batch(jobs, f"g{n}", lane)
    assert drain(turns) == expected
    assert len(turns) == 0
    with pytest.raises(IndexError):
        turns.take()


def test_a_tenant_with_a_huge_batch_gets_one_turn_in_two() -> None:
    turns = Turns()
    turns.put_batch([f"a{n}" for n in range(1_000)], "big", Lane("normal", "A"))
    turns.put_batch([f"b{n}" for n in range(10)], "small", Lane("normal", "B"))
    order = drain(turns)
    assert max(order.index(f"b{n}") for n in range(10)) == 19


def test_a_delivery_lends_its_lane_to_enqueues_that_name_none() -> None:
    assert current_lane() == DEFAULT_LANE
    with delivering(Lane("high", "A")):
        assert current_lane() == Lane("high", "A")
        assert current_lane(Lane("low", "B")) == Lane("low", "B")
    assert current_lane() == DEFAULT_LANE


def test_sqs_bodies_carry_the_lane_and_older_bodies_read_as_normal() -> None:
    body = encode("job_1", Lane("high", "acme"))
    assert decode(body) == "job_1"
    assert decode_lane(body) == Lane("high", "acme")
    assert encode("job_2") == '{"job_id": "job_2"}'  # the default lane adds nothing
    assert decode_lane('{"job_id": "job_3"}') == DEFAULT_LANE
    assert decode_lane('{"job_id": "j", "priority": "urgent", "tenant": 7}') == DEFAULT_LANE


async def test_a_free_slot_goes_to_the_lowest_rank_waiting() -> None:
    slots = RankedSlots(1)
    order: list[str] = []
    hold = asyncio.Event()

    async def run(name: str, rank: int) -> None:
        async with slots.slot(rank):
            order.append(name)
            if name == "first":
                await hold.wait()

    first = asyncio.create_task(run("first", 2))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(run(n, r)) for n, r in (("low", 3), ("batch", 2), ("high", 0))]
    await asyncio.sleep(0)
    assert (slots.busy, slots.waiting, slots.room) == (1, 3, -3)
    hold.set()
    await asyncio.gather(first, *waiters)
    assert order == ["first", "high", "batch", "low"]
    assert (slots.busy, slots.room) == (0, 1)


async def test_expected_messages_count_against_the_room() -> None:
    slots = RankedSlots(2)
    slots.expect(2)
    assert slots.room == 0
    async with slots.slot(0):
        assert (slots.incoming, slots.busy, slots.room) == (1, 1, 0)
    assert slots.room == 1
