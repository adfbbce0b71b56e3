"""worker.outage and the supervisor around arq: Redis outages are ridden out with backoff, and a
worker gives up after its limit. (That a fresh arq Worker runs jobs with all its slots once Redis
is back: tests/integration/test_arq_worker.py.)"""

from __future__ import annotations

import asyncio
import math
import socket
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.factory import ServiceFactory
from tests.conftest import make_settings
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache
from worker.outage import MAX_DELAY_S, Outage, RedisGaveUp
from worker.supervisor import Supervisor, log_unrecorded_job_ends

DOWN = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_backs_off_up_to_a_cap_and_gives_up_at_its_limit() -> None:
    clock = Clock()
    outage = Outage("test", limit_s=60, clock=clock)
    delays = []
    while clock.now < 1059:
        delays.append(outage.failed(DOWN))
        clock.now += delays[-1]
    assert delays[0] <= 0.25
    assert max(delays) <= MAX_DELAY_S
    assert sum(delays) <= 60 + 1e-9  # never sleeps past the limit
    clock.now = 1060
    with pytest.raises(RedisGaveUp, match="60 s"):
        outage.failed(DOWN)


def test_a_recovery_starts_the_next_outage_afresh() -> None:
    clock = Clock()
    outage = Outage("test", limit_s=10, clock=clock)
    for _ in range(5):
        outage.failed(DOWN)
    clock.now += 9
    outage.recovered()
    clock.now += 100
    assert outage.failed(DOWN) <= 0.25  # a new outage: first delay, full limit again
    assert math.isclose(outage.down_s, 0)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_a_worker_keeps_trying_an_unreachable_redis_then_gives_up_at_its_limit() -> None:
    """Redis never answers: the supervisor starts fresh arq Workers with backoff (it does not
    end at the first failure) and raises RedisGaveUp once the outage has lasted its limit."""
    settings = make_settings(
        queue_backend="arq", redis_url=closed_port_url(), worker_outage_limit_s=1.5
    )
    factory = ServiceFactory(
        settings, store=FakeJobStore(), cache=FakeResultCache(), queue=FakeJobQueue(), llm=FakeLLM()
    )
    services = await factory.start(consume=False)
    supervisor = Supervisor(settings, services=services, handle_signals=False)
    started = time.monotonic()
    try:
        with pytest.raises(RedisGaveUp, match="giving up"):
            await asyncio.wait_for(supervisor.run(), timeout=20)
    finally:
        await services.close()
    assert supervisor.outage.failures >= 3  # tried again, with backoff, until the limit
    assert 1.5 <= time.monotonic() - started < 10


async def test_arqs_unrecorded_job_ends_are_one_warning_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    log_unrecorded_job_ends()
    try:
        task = asyncio.ensure_future(asyncio.sleep(0))
        await task
        context = {"message": "Task exception was never retrieved", "exception": DOWN}
        loop.call_exception_handler({**context, "future": task})
        loop.call_exception_handler({**context, "exception": ValueError("a bug")})
    finally:
        loop.set_exception_handler(previous)
    levels = [(r.levelname, r.getMessage()[:40]) for r in caplog.records]
    assert levels[0] == ("WARNING", "arq could not record a job's end, Redis ")
    assert levels[1][0] == "ERROR"  # anything else is still asyncio's report
    assert len(levels) == 2
