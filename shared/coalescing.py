"""Coalescing: identical requests of one tenant share one LLM call.

A job in flight holds its tenant's cache key (a request with `cache` not disabled has one): the
worker that claims a job takes the key, and keeps it until the job ends. A worker that claims
another job with the same key while it is held does not call the LLM: the job follows the
holder (its leader), queued with `coalesced_with` naming it, and ends when the leader ends, with
the leader's result or LLM failure (`coalesced: true`), its own webhook and its own usage row
(no tokens, no LLM call). A leader that ends otherwise (cancelled, or never answered) releases
its followers, which then run themselves. This covers single jobs, both API dialects and
batches alike, since it happens where every job runs.

Race safety without a transaction across records: a follower is recorded (`add_follower`)
before it changes, and reads its leader again after; a leader that ends first writes its end,
then frees its key, then settles the followers recorded. Whichever of the two comes second sees
the other and settles the follower, a compare-and-set, so only once. The key is taken with a
compare-and-set too, so of jobs claimed at once exactly one leads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.job_writes import JobWrites
from shared.lanes import lane_of
from shared.models import Completion, Job, JobStatus
from shared.ports import JobQueue, ResultCache, Store
from shared.webhooks.hooks import WebhookHooks

log = logging.getLogger(__name__)

MAX_TRIES = 5  # a key changing hands this often while we look: run the job rather than wait


@dataclass(frozen=True)
class Joined:
    """What `Coalescing.join` made of a job just claimed."""

    waits: bool = False  # it follows an identical job in flight: no LLM call of its own
    answer: Completion | None = None  # the cache held its answer (the leader just ended)
    ended: Job | None = None  # it followed a job that had ended meanwhile, and ended with it
    following: Job | None = None  # the job as it now waits (queued, `coalesced_with` its leader)


LEADS = Joined()


class Coalescing:
    def __init__(
        self,
        store: Store,
        cache: ResultCache | None,
        queue: JobQueue,
        hooks: WebhookHooks | None = None,
    ) -> None:
        self.store, self.cache, self.queue = store, cache, queue
        self.writes = JobWrites(store)
        self.hooks = hooks or WebhookHooks()

    async def join(self, job: Job) -> Joined:
        """For a job just claimed (running): follow the job holding its key, or take the key
        and lead (answered from the cache if the previous holder has just filled it)."""
        key = job.cache_key
        if key is None:
            return LEADS
        if await self.store.take_key(job.tenant, key, job.id, replacing=None):
            return Joined(answer=await self._cached(key))  # the common case: one write
        for _ in range(MAX_TRIES):
            holder = await self.store.key_holder(job.tenant, key)
            if holder == job.id:
                return LEADS  # its own retry
            leader = await self.store.get_job(holder) if holder else None
            if leader is not None and not leader.status.is_terminal:
                return await self._follow(job, leader.id)
            if await self.store.take_key(job.tenant, key, job.id, replacing=holder):
                return Joined(answer=await self._cached(key))
        log.warning("job %s: its cache key kept changing hands; running it alone", job.id)
        return LEADS

    async def _follow(self, job: Job, leader_id: str) -> Joined:
        await self.store.add_follower(leader_id, job.id)
        followed = await self.writes.follow(job.id, attempt=job.attempts, leader_id=leader_id)
        if followed is None:
            return Joined(waits=True)  # taken over by a later claim, which runs it
        ended = await self.settle(followed)  # the leader may have ended meanwhile
        if ended:
            return Joined(waits=True, ended=ended[0])
        return Joined(waits=True, following=followed)

    async def _cached(self, key: str) -> Completion | None:
        if self.cache is None:
            return None
        try:
            return await self.cache.get(key)
        except Exception:
            log.warning("cache read failed; the job calls the LLM", exc_info=True)
            return None

    async def settle(self, follower: Job) -> list[Job]:
        """A follower whose leader may have ended: settle it if so (a redelivered follower, or
        one that has just joined). Returns it if it ended."""
        leader_id = follower.waiting_on
        if leader_id is None:
            return []
        leader = await self.store.get_job(leader_id)
        if leader is not None and not leader.status.is_terminal:
            return []
        ended = await self._settle([follower.id], leader_id, leader)
        await self.store.drop_followers(leader_id)
        return ended

    async def leader_ended(self, job: Job) -> list[Job]:
        """After `job` ended: free its key and settle the jobs that followed it. Returns the
        followers that ended with it (the others, released, are back on the queue)."""
        never_led = job.attempts == 0 or job.coalesced_with is not None  # never took a key
        if job.cache_key is None or never_led or not job.status.is_terminal:
            return []
        await self.store.release_key(job.tenant, job.cache_key, job.id)
        followers = await self.store.followers(job.id)
        if not followers:
            return []
        ended = await self._settle(followers, job.id, job)
        await self.store.drop_followers(job.id)
        return ended

    async def _settle(self, job_ids: list[str], leader_id: str, leader: Job | None) -> list[Job]:
        changed = await self.writes.settle(job_ids, leader_id, leader, self.hooks.delivery_for)
        released = [job for job in changed if job.status is JobStatus.queued]
        for job in released:
            log.info("job %s runs on its own: the job it joined did not answer", job.id)
            if job.batch_id is None:
                await self.queue.enqueue(job.id, lane=lane_of(job))
            else:
                await self.queue.enqueue_many([job.id], group=job.batch_id, lane=lane_of(job))
        return [job for job in changed if job.status.is_terminal]
