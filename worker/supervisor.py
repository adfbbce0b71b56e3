"""Supervisor: a worker process on Redis, built on arq's documented API.

arq's `Worker.async_run()` ends at the first error its poll loop meets, an unreachable Redis
included. The supervisor runs one `Worker` at a time on a shared pool (`redis_pool=`) and, when
one fails because Redis went away, waits with backoff (`Outage`) and starts a fresh one; after
WORKER_OUTAGE_LIMIT_S of continuous outage it raises RedisGaveUp. Jobs a failed Worker was
running carry on (they need the store and the LLM, not Redis); the next Worker starts once they
are done, so arq never runs more than `max_jobs` of them. Beside the Workers it runs the batch
runner (worker/batch_runner.py) and, with services of its own, the lost-job sweep.

On SIGTERM or SIGINT it stops taking jobs (the Worker's task is cancelled, the runner stops), lets
running jobs finish for `completion_wait_s`, cancels what is left (arq and the runner put those
jobs back) and waits briefly for arq to record them, then closes everything it started.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import Any

from arq import Worker

from shared.adapters.queue.arq import ArqJobQueue
from shared.background import BackgroundTasks
from shared.config import Settings
from shared.execution import requeueing_consumer
from shared.factory import ServiceFactory, Services
from worker.arq_options import completion_wait_s, worker_options
from worker.batch_runner import BatchRunner
from worker.metrics import serve_metrics, stop_metrics
from worker.outage import UNREACHABLE, Outage
from worker.quota_gate import QuotaGate
from worker.slots import Slots

log = logging.getLogger(__name__)

JOB_GRACE_S = 5.0  # a failing worker lets its running jobs record their outcome this long
CANCEL_WAIT_S = 2.0  # for cancelled jobs to be put back
SETTLE_WAIT_S = 2.0  # for arq to record the end of the jobs that ended
CLOSE_TIMEOUT_S = 20.0  # for each step of shutdown
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    """`burst=True` runs every waiting job and returns (tests). `services` are used as they are
    and not closed; without them the supervisor builds its own and sweeps for lost jobs."""

    def __init__(
        self,
        settings: Settings,
        *,
        burst: bool = False,
        services: Services | None = None,
        handle_signals: bool = True,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("REDIS_URL must be set to run arq workers")
        self.settings, self.burst, self.handle_signals = settings, burst, handle_signals
        self.given = services
        self.queue = ArqJobQueue(settings.redis_url)  # the consumer side's own pool
        self.slots = Slots(settings.worker_concurrency)
        self.stopping = asyncio.Event()
        self.outage = Outage("arq worker", settings.worker_outage_limit_s)

    def stop(self) -> None:
        """Stop taking jobs; `run` then lets running ones finish and returns."""
        self.stopping.set()
        self.slots.poke()

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(close_step, "close the queue", self.queue.close)
            services = await self._services(stack)
            handler = requeueing_consumer(services.executor, self.queue)
            gate = QuotaGate(services.executor.providers_wait_s, self.slots.capacity)
            runner = BatchRunner(self.queue, handler, self.slots, gate=gate)
            server = serve_metrics(self.settings, services.registry)
            if server is not None:
                stack.push_async_callback(
                    close_step, "stop the metrics server", stop_metrics, server
                )
            gc.freeze()  # start-up's objects live as long as the process: out of the GC's scans
            if self.burst:
                await self._drain(services, runner)
                return
            self._handle_signals(stack)
            log_unrecorded_job_ends()
            background = BackgroundTasks(stack)
            if self.given is None:
                background.start("sweeps", services.sweeper.sweep_forever, self.stopping)
            background.start("batch jobs", runner.run, self.stopping)
            await self._serve(services)

    async def _services(self, stack: AsyncExitStack) -> Services:
        if self.given is not None:
            return self.given
        factory = ServiceFactory(self.settings, queue=self.queue)
        services = await factory.start(consume=False, deliver_webhooks=True, heartbeat="arq")
        stack.push_async_callback(close_step, "close the services", services.close)
        return services

    async def _serve(self, services: Services) -> None:
        """Workers one after another until stopped; then the running jobs' way out."""
        grace = JOB_GRACE_S
        try:
            while not self.stopping.is_set():
                try:
                    await self._worker(services)
                except UNREACHABLE as exc:
                    await self._sleep(self.outage.failed(exc))
                    await self.slots.until(
                        lambda: not self.slots.arq_jobs or self.stopping.is_set()
                    )
            grace = completion_wait_s(self.settings)
        finally:
            await self._wind_down(grace)

    async def _worker(self, services: Services) -> None:
        """One arq Worker, until it fails, ends (burst) or the supervisor stops."""
        pool = await self.queue.connected()
        ctx: dict[str, Any] = {"services": services, "slots": self.slots, "queue": self.queue}
        worker = Worker(
            **worker_options(self.settings, pool, ctx, burst=self.burst),
            on_startup=self._connected,
        )
        running = asyncio.create_task(worker.async_run(), name="arq worker")
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not running.done():  # stop polling; arq's running jobs are not this task's
                running.cancel()
            with suppress(asyncio.CancelledError):
                await running

    async def _connected(self, ctx: dict[str, Any]) -> None:
        """arq's `on_startup`: it has just talked to Redis."""
        self.outage.recovered()

    async def _drain(self, services: Services, runner: BatchRunner) -> None:
        while True:
            await asyncio.gather(runner.drain(), self._worker(services))
            if not await self.queue.pending():
                return

    async def _wind_down(self, grace_s: float) -> None:
        self.stop()
        if not await self.slots.until(lambda: self.slots.idle, grace_s):
            log.warning("cancelling the jobs still running after %.0f s", grace_s)
            self.slots.cancel_all()
            await self.slots.until(lambda: self.slots.idle, CANCEL_WAIT_S)
        await self.slots.until(lambda: not self.slots.unsettled, SETTLE_WAIT_S)

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    def _handle_signals(self, stack: AsyncExitStack) -> None:
        if not self.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._signalled, signum)
            stack.callback(loop.remove_signal_handler, signum)

    def _signalled(self, signum: int) -> None:
        log.info("%s: no new jobs; waiting for the running ones", signal.Signals(signum).name)
        self.stop()


def log_unrecorded_job_ends() -> None:
    """A Worker that failed leaves its running jobs' arq tasks behind; when Redis is still away
    as they end, arq's recording of their end fails and asyncio reports it, with a traceback, as
    "Task exception was never retrieved". The store holds each job's outcome and arq delivers
    the job again (it is then acknowledged): say so in one line instead. asyncio reports it when
    the task is collected, often as the process ends, so the handler stays for the loop's life."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, UNREACHABLE) and isinstance(context.get("future"), asyncio.Task):
            log.warning("arq could not record a job's end, Redis being unreachable: %r", exc)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


async def close_step(what: str, close: Callable[..., Awaitable[object]], *args: Any) -> None:
    """One step of a shutdown: bounded in time, and a failure is logged, never raised, so the
    steps after it still run."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await close(*args)
    except UNREACHABLE as exc:  # expected while Redis is down: no traceback
        log.warning("shutdown: could not %s: %r", what, exc)
    except Exception:
        log.exception("shutdown: could not %s", what)
