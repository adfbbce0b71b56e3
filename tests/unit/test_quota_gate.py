"""QuotaGate: no take while no provider may be called; after a hold, rounds of 1, 2, 4… jobs
until one reaches the consumer's capacity (worker/quota_gate.py)."""

from __future__ import annotations

import asyncio
import random

from worker.quota_gate import HOLD_JITTER_S, QuotaGate


class Waits:
    """What `providers_wait_s` answers next."""

    def __init__(self) -> None:
        self.now = 0.0

    async def __call__(self) -> float:
        return self.now


async def test_a_free_quota_lets_every_free_slot_be_filled() -> None:
    gate = QuotaGate(Waits(), capacity=16)
    assert await gate.hold_s() == 0
    assert (gate.take(16), gate.limited, gate.holds) == (16, False, 0)


async def test_a_full_quota_holds_until_a_slot_frees_then_ramps_up() -> None:
    waits = Waits()
    gate = QuotaGate(waits, capacity=16, rng=random.Random(7))
    waits.now = 12.5
    hold = await gate.hold_s()
    assert 12.5 <= hold <= 12.5 + HOLD_JITTER_S
    assert gate.holds == 1

    waits.now = 0
    rounds = []
    while gate.limited:
        assert await gate.hold_s() == 0
        count = gate.take(16)
        rounds.append(count)
        gate.took(count)
    assert rounds == [1, 2, 4, 8]
    assert gate.take(16) == 16  # a round reached the capacity: every slot again


async def test_a_round_short_of_jobs_does_not_grow_and_a_full_quota_starts_again() -> None:
    waits = Waits()
    gate = QuotaGate(waits, capacity=8)
    waits.now = 3
    await gate.hold_s()
    gate.took(gate.take(8))  # 1
    assert gate.take(8) == 2
    gate.took(1)  # only one job was waiting
    assert gate.take(8) == 2
    await gate.hold_s()  # full again
    assert gate.take(8) == 1
    assert gate.take(0) == 0


async def test_settling_waits_for_the_round_at_most_settle_s() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await QuotaGate.settle([done])
    assert done.done()
    await QuotaGate.settle([])


async def test_a_check_that_fails_holds_nothing() -> None:
    async def broken() -> float:
        raise ConnectionError("redis went away")

    gate = QuotaGate(broken, capacity=4)
    assert await gate.hold_s() == 0
    assert (gate.take(4), gate.holds) == (4, 0)
