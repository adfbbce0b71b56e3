"""Lanes: where a queued job waits, and the order workers take them in (docs/adr/0015).

A job's lane is its priority and its tenant. Every queue applies the same rule:
1. a higher priority first (`high`, then `normal`, then `low`);
2. within a priority, single jobs before batch jobs (docs/adr/0009);
3. within a priority and kind, tenants take turns; within a tenant, its batches take turns.

`Turns` is that rule on plain data, for the in-process queue; the arq and SQS adapters carry it out
with what Redis and SQS offer. A delivery runs inside `delivering(lane)`, so a retry that a
consumer enqueues without naming a lane keeps the one the job was delivered in.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from shared.keys import DEFAULT_PRIORITY, PRIORITIES, Priority

if TYPE_CHECKING:
    from shared.models import Batch, Job


class Lane(NamedTuple):
    priority: Priority = DEFAULT_PRIORITY
    tenant: str = ""


DEFAULT_LANE = Lane()
RANK: dict[Priority, int] = {p: n for n, p in enumerate(PRIORITIES)}  # 0 goes first


def lane_of(item: Job | Batch) -> Lane:
    return Lane(item.priority, item.tenant)


def priority_or_default(value: object) -> Priority:
    """A stored or received priority; anything unknown (an older record) is `normal`."""
    return value if value in RANK else DEFAULT_PRIORITY  # type: ignore[return-value]


_delivering: ContextVar[Lane] = ContextVar("delivering_lane", default=DEFAULT_LANE)


@contextmanager
def delivering(lane: Lane) -> Iterator[None]:
    """Run a delivery in `lane`: an enqueue without a lane inside it (a retry) keeps it."""
    token = _delivering.set(lane)
    try:
        yield
    finally:
        _delivering.reset(token)


def current_lane(asked: Lane | None = None) -> Lane:
    """`asked`, else the lane of the delivery running in this task (the default outside one)."""
    return asked if asked is not None else _delivering.get()


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RoundRobin(Generic[K, V]):
    """Queues by key, served in turn: each take pops from the first key, which then goes to the
    back (or away, once empty). A new key is served after the keys already waiting."""

    def __init__(self) -> None:
        self._queues: OrderedDict[K, deque[V]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def count(self, key: K) -> int:
        queue = self._queues.get(key)
        return len(queue) if queue is not None else 0

    def put(self, key: K, items: list[V] | tuple[V, ...]) -> None:
        if items:
            self._queues.setdefault(key, deque()).extend(items)
            self._size += len(items)

    def take(self) -> tuple[K, V]:
        key, queue = next(iter(self._queues.items()))
        item = queue.popleft()
        self._size -= 1
        if queue:
            self._queues.move_to_end(key)
        else:
            del self._queues[key]
        return key, item


class Turns:
    """Every waiting job id, taken in the order of the module's rule."""

    def __init__(self) -> None:
        self._singles = {p: RoundRobin[str, str]() for p in PRIORITIES}  # by tenant
        self._batches = {p: RoundRobin[str, str]() for p in PRIORITIES}  # tenants take turns …
        self._groups: dict[tuple[Priority, str], RoundRobin[str | None, str]] = {}  # … and batches

    def __len__(self) -> int:
        singles = sum(len(q) for q in self._singles.values())
        return singles + sum(len(q) for q in self._groups.values())

    def ahead_of(self, lane: Lane) -> int:
        """Jobs that go before or alongside a new job of `lane`: every job of a higher priority,
        and the tenant's own at its priority (other tenants' take turns with it)."""
        higher = PRIORITIES[: RANK[lane.priority]]
        count = sum(len(self._singles[p]) + len(self._batches[p]) for p in higher)
        own = self._singles[lane.priority].count(lane.tenant)
        return count + own + self._batches[lane.priority].count(lane.tenant)

    def put_single(self, job_id: str, lane: Lane) -> None:
        self._singles[lane.priority].put(lane.tenant, [job_id])

    def put_batch(self, job_ids: list[str], group: str | None, lane: Lane) -> None:
        """A group's jobs; the tenant gets one turn ticket per job, its groups share them."""
        if not job_ids:
            return
        key = (lane.priority, lane.tenant)
        self._groups.setdefault(key, RoundRobin()).put(group, job_ids)
        self._batches[lane.priority].put(lane.tenant, [lane.tenant] * len(job_ids))

    def take(self) -> tuple[str, Lane]:
        """The next job id and its lane; IndexError when nothing waits."""
        for priority in PRIORITIES:
            if self._singles[priority]:
                tenant, job_id = self._singles[priority].take()
                return job_id, Lane(priority, tenant)
            if self._batches[priority]:
                tenant, _ = self._batches[priority].take()
                groups = self._groups[(priority, tenant)]
                _, job_id = groups.take()
                if not groups:
                    del self._groups[(priority, tenant)]
                return job_id, Lane(priority, tenant)
        raise IndexError("no job waits")
