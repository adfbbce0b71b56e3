"""A batch's jobs as a lazy sequence: built one at a time from its requests when read.

Accepting a 50,000-request batch used to hold every parsed request, every Job and every stored
row at once (about 250 MB). BatchService plans the batch in one pass (job ids, cache keys), and
hands the store a `BatchJobs`: each Job is built when the store reads it, and dropped after. With
requests that are themselves read lazily (api/batch_body.py's NDJSON), the API holds little more
than the ids and cache keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, overload

from shared.keys import KeyHold
from shared.model_catalog import ModelCatalog
from shared.models import Batch, BatchItem, Job, JobStatus, new_id
from shared.service import cache_key


@dataclass
class BatchPlan:
    """One pass over the requests: what the batch needs before anything is built or stored."""

    ids: list[str] = field(default_factory=list)
    cache_keys: list[str | None] = field(default_factory=list)
    webhook_urls: set[str] = field(default_factory=set)
    max_tokens: list[int | None] = field(default_factory=list)  # for the key's token estimate

    @classmethod
    def of(cls, tenant: str, items: Sequence[BatchItem], models: ModelCatalog) -> BatchPlan:
        plan = cls()
        for item in items:
            models.check(item.model, where=f"custom_id {item.custom_id!r}: ")
            plan.ids.append(new_id("job"))
            plan.cache_keys.append(cache_key(tenant, item.chat_request()) if item.cache else None)
            plan.max_tokens.append(item.max_tokens)
            if item.webhook_url:
                plan.webhook_urls.add(item.webhook_url)
        return plan

    def queued_ids(self, hits: Mapping[str, Any]) -> list[str]:
        return [i for i, key in zip(self.ids, self.cache_keys, strict=True) if key not in hits]

    def queued_max_tokens(self, hits: Mapping[str, Any]) -> list[int | None]:
        pairs = zip(self.max_tokens, self.cache_keys, strict=True)
        return [tokens for tokens, key in pairs if key not in hits]


class BatchJobs(Sequence[Job]):
    """The batch's jobs in submission order; cache hits come answered (`answer(job, hit)`)."""

    def __init__(
        self,
        batch: Batch,
        items: Sequence[BatchItem],
        plan: BatchPlan,
        hits: Mapping[str, Any],
        answer: Any,
        hold: Callable[[Job], KeyHold] | None = None,
    ) -> None:
        self.batch, self.items, self.plan, self.hits, self.answer = batch, items, plan, hits, answer
        self.hold = hold  # what each job holds on its key's limits (shared/key_limits.py)

    def __len__(self) -> int:
        return len(self.plan.ids)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        if isinstance(index, slice):
            return [self._job(n) for n in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._job(index)

    def __iter__(self) -> Iterator[Job]:
        for n in range(len(self)):
            yield self._job(n)

    def _job(self, position: int) -> Job:
        item, batch = self.items[position], self.batch
        # A microsecond apart, so "oldest first" is submission order (results come in that order).
        created = batch.created_at + timedelta(microseconds=position)
        key = self.plan.cache_keys[position]
        job = Job(
            id=self.plan.ids[position],
            tenant=batch.tenant,
            key_id=batch.key_id,
            priority=batch.priority,
            request=item.chat_request(),
            batch_id=batch.id,
            custom_id=item.custom_id,
            webhook_url=item.webhook_url,
            metadata=item.metadata,
            cache_key=key,
            created_at=created,
            updated_at=created,
        )
        if key is not None and key in self.hits:
            job = self.answer(job, self.hits[key])
        if self.hold is not None:
            job.key_hold = self.hold(job)
        return job

    def queued(self) -> Iterator[Job]:
        return (job for job in self if job.status is JobStatus.queued)
