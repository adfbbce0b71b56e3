"""Ports: the interfaces the service depends on. Adapters in `shared/adapters/` implement them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import IO, Literal, NamedTuple, Protocol

from shared.admin_queries import BatchQuery, JobQuery, QueueBacklog
from shared.dead_letters import REDRIVE_LIMIT, DeadLetterQueue
from shared.heartbeats import WorkerBeat
from shared.job_stream import Delta, StreamEvent
from shared.key_usage import KeyDeltas, KeyMonth
from shared.keys import DEFAULT_PRIORITY, ApiKeyRecord, Priority
from shared.lanes import Lane
from shared.models import (
    Batch,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobStatus,
    WebhookDelivery,
)
from shared.transitions import Change, Decision
from shared.usage import UsageCounters

JobHandler = Callable[[str], Awaitable[None]]
IdempotentKind = Literal["job", "batch"]
JobFinished = Callable[[Job], Awaitable[None]]


class JobRef(NamedTuple):
    """An unfinished job as sweeps see it: enough to enqueue it again in its batch's group."""

    id: str
    batch_id: str | None
    tenant: str = ""  # with priority: the job's lane (shared/lanes.py), kept when re-enqueued
    priority: Priority = DEFAULT_PRIORITY

    @property
    def lane(self) -> Lane:
        return Lane(self.priority, self.tenant)


class JobStore(Protocol):
    """Durable job records. Every status change is a compare-and-set."""

    async def start(self) -> None:
        """Open connections and create the schema if needed."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers (used by /readyz)."""

    async def create_job(self, job: Job) -> Job:
        """Insert a job and return it. If the job has an idempotency_key that the same tenant used
        within the last 24 h, insert nothing and return that earlier job instead."""

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        """A job by id; with `tenant`, only if it belongs to that tenant."""

    async def find_idempotent(self, kind: IdempotentKind, tenant: str, key: str) -> str | None:
        """The id of the job (or batch) that `key` made for `tenant` within the last 24 h, or
        None. A read of one key: it takes nothing, so a replay can be answered before any
        admission check (a batch whose key is reserved but not yet stored may be named)."""

    async def list_jobs(
        self,
        tenant: str,
        *,
        status: JobStatus | None = None,
        batch_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first (or oldest first: a batch's submission order), with an opaque cursor
        for the next page. Raises InvalidCursor for a cursor this store did not make."""

    async def change_jobs(
        self, job_ids: Sequence[str], decide: Decision, *, durable: bool = True
    ) -> list[Change]:
        """For each job: read it, let `decide` (a shared.transitions decision) say its change,
        and write that change atomically, with everything that moves with it (its batch's
        counters, its tenant's usage), only while the job is still as it was read (else read
        it again and decide again). Returns the changes written; a job that is missing or that
        `decide` refuses is left alone. The store applies decisions, it makes none.

        `durable=False`: the caller need not wait until the write would survive a power cut
        (a claim: losing one only means the job runs again)."""

    async def change_job(
        self, job_id: str, decide: Decision, *, durable: bool = True
    ) -> Change | None:
        """`change_jobs` for one job."""

    async def delete_job(self, job_id: str, tenant: str, *, expect: JobStatus) -> bool:
        """Erase the job and everything of it (its result, webhook state, idempotency key; never
        usage counters, nor its batch's counts), only if it belongs to `tenant` and its status
        is still `expect` (a compare-and-set: the caller decided on the job as it read it).
        True when it was deleted."""

    async def unfinished_jobs(
        self,
        *,
        limit: int = 10_000,
        updated_before: datetime | None = None,
        status: JobStatus | None = None,
    ) -> list[JobRef]:
        """Jobs still queued or running (or only those in `status`), oldest first; with
        `updated_before`, only those unchanged since then (for re-enqueueing after a restart or a
        lost queue message). No scan."""

    async def count_unfinished(self) -> dict[JobStatus, int]:
        """How many jobs are queued and how many running (both keys always present): the
        backlog that /metrics reports for scaling decisions. Cheap, not a scan of every job."""


class BatchStore(Protocol):
    """Durable batch records; their counts move in the same write as their jobs' statuses."""

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch:
        """Store a batch and all its jobs. If the batch has an idempotency_key that the same
        tenant used within 24 h, store nothing and return that earlier batch instead."""

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None: ...

    async def list_batches(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        """The tenant's batches newest first, with an opaque cursor for the next page (keyset on
        created_at and id: no repeats or gaps while batches are added). Raises InvalidCursor for
        a cursor this store did not make. Reads an index, never every batch."""

    async def mark_batch(
        self,
        batch_id: str,
        *,
        expect: Sequence[BatchStatus],
        to: BatchStatus,
        completed_at: datetime | None = None,
        webhook: WebhookDelivery | None = None,
        reopen: bool = False,
    ) -> Batch | None:
        """Compare-and-set a batch's status (so `batch.completed` fires exactly once).
        `reopen` clears `completed_at` and the webhook state: the batch runs again (its
        `batch.completed` goes out anew when it next completes)."""

    async def closable_batch_ids(self) -> list[str]:
        """Batches still open although every job has ended (a completion check was missed)."""


class WebhookOutbox(Protocol):
    """Pending webhook deliveries, kept on the job or batch they announce."""

    async def set_webhook(
        self, subject_id: str, delivery: WebhookDelivery, *, expected: WebhookDelivery | None
    ) -> bool:
        """Record webhook delivery state on a job or batch (by its id), if its delivery is still
        `expected` (None: it has none yet). False when it changed meanwhile (an operator's
        replay, another sweeper past its lease) or there is no such subject: nothing written."""

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Claim ids of jobs/batches whose pending webhook is due; pushes their next attempt to
        `lease_until` so no other worker takes them meanwhile."""

    async def webhook_subject(self, subject_id: str) -> Job | Batch | None:
        """The job or batch with this id (any tenant)."""


class UsageStore(Protocol):
    """Usage counters per tenant x day x model x provider (shared/usage.py says what a job adds).

    The write that ends a job, or stores it already ended (a cache hit), moves its counters in
    the same transaction, so a write whose condition fails counts nothing."""

    async def usage(self, tenant: str, start: date, end: date) -> list[UsageCounters]:
        """The tenant's counters for the UTC days `start`..`end` (both included), one per day x
        model x provider that has any. Reads counters only, never jobs."""


class CoalescingStore(Protocol):
    """Records of request coalescing (shared/coalescing.py says the rules): which job is in flight
    for a tenant's cache key, and which jobs wait for a job's outcome. Reads are consistent."""

    async def key_holder(self, tenant: str, cache_key: str) -> str | None:
        """The id of the job holding the tenant's cache key, or None."""

    async def take_key(
        self, tenant: str, cache_key: str, job_id: str, *, replacing: str | None
    ) -> bool:
        """Make `job_id` the key's holder, only while nobody holds it (`replacing` None) or
        `replacing` still does (a compare-and-set). True when taken."""

    async def release_key(self, tenant: str, cache_key: str, job_id: str) -> None:
        """Free the key if `job_id` holds it; otherwise leave it alone."""

    async def add_follower(self, leader_id: str, follower_id: str) -> None:
        """Record that `follower_id` waits for `leader_id`'s outcome."""

    async def followers(self, leader_id: str) -> list[str]:
        """The jobs recorded as waiting for `leader_id`."""

    async def drop_followers(self, leader_id: str) -> None:
        """Forget who waited for `leader_id` (its followers are settled)."""


class RecordRetention(Protocol):
    """Deletes what JOB_RETENTION_DAYS no longer keeps (shared/retention.py says what expires)."""

    async def purge_expired(self, limit: int) -> int:
        """Delete up to `limit` expired jobs and batches, with what belongs to them (results,
        webhook state, idempotency keys; never usage counters). Returns how many were deleted:
        fewer than `limit` means nothing more is due now. A store whose records expire by
        themselves (DynamoDB's TTL, and reads hide them meanwhile) deletes nothing here."""


class AdminStore(Protocol):
    """What the operator console reads across tenants. Every read goes through an index and
    reads a bounded number of records (at most READ_BUDGET a call, shared/admin_queries.py):
    never a scan, whatever the store holds."""

    async def find_jobs(
        self, query: JobQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """Jobs matching `query`, newest first (created_at, then id), with an opaque cursor for
        the rest. A page may come back short, with a cursor, when the filter dropped most of
        what was read. Raises InvalidCursor for a cursor this store did not make."""

    async def find_batches(
        self, query: BatchQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        """Batches matching `query`, newest first, with an opaque cursor (as find_jobs)."""

    async def failing_webhooks(self, *, limit: int = 100) -> list[Job | Batch]:
        """Jobs and batches whose webhook gave up (`failed`) or is waiting to retry after a
        failed attempt, the longest-failing first."""

    async def queue_backlog(self) -> QueueBacklog:
        """Queued jobs by queue (singles, batch jobs), running jobs, the oldest queued one."""


class WorkerRegistry(Protocol):
    """Heartbeats of the processes that run jobs (shared/heartbeats.py): each writes its own
    every WORKER_HEARTBEAT_S; the console lists them. Old beats are forgotten on their own."""

    async def beat(self, beat: WorkerBeat) -> None:
        """Record this worker's latest beat (replacing its previous one). Never raises."""

    async def beats(self) -> list[WorkerBeat]:
        """The latest beat of every worker heard from lately (within BEAT_KEPT_S), newest
        first."""

    async def close(self) -> None: ...


class DeadLetters(Protocol):
    """The layout's dead-letter queues (shared/dead_letters.py): how deep each is, and moving
    their messages back to the queue they came from. A layout without any (NoDeadLetters) says
    so with `has_queues` False."""

    has_queues: bool

    async def depths(self) -> list[DeadLetterQueue]:
        """Each source queue's dead-letter queue with its depth, in the order workers take the
        source queues. Raises QueueUnavailable when they cannot be read."""

    async def redrive(self, queue: str, limit: int = REDRIVE_LIMIT) -> int:
        """Move up to `limit` messages of `queue`'s dead-letter queue back to `queue`, bodies
        and attributes unchanged; returns how many moved. Raises UnknownQueue for a role this
        layout has no dead-letter queue for."""


class KeyCounters(Protocol):
    """Each run-time API key's counters against its limits (shared/key_usage.py): requests and
    tokens per UTC month (`month` is "YYYY-MM"), jobs in flight, and tokens of jobs that ended
    per minute (`minute` is "YYYY-MM-DDTHH:MM"). Every conditional write is one atomic
    compare-and-set, exact across processes. A job's own changes move these counters in the
    write of the change (`Change.key_deltas`), as they move usage counters."""

    async def reserve(
        self,
        key_id: str,
        month: str,
        *,
        requests: int,
        tokens: int,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> KeyMonth | None:
        """Add `requests` and `tokens` to the key's month only if neither then passes its
        maximum (None: no maximum), in one atomic write. The month's figures after it, or None
        when refused (nothing was added)."""

    async def unreserve(self, key_id: str, month: str, *, requests: int, tokens: int) -> None:
        """Give back what `reserve` took (a submit refused after its reservation)."""

    async def key_month(self, key_id: str, month: str) -> KeyMonth:
        """The key's figures for the month (zeros when it has none)."""

    async def mark_alerted(self, key_id: str, month: str, kind: str) -> bool:
        """Record that the key's `kind` budget event went out this month: True the first time
        only (a compare-and-set), so the event goes out once however many processes see it."""

    async def enter(self, key_id: str, jobs: int, ceiling: int) -> bool:
        """Take `jobs` in-flight slots, only if the key then holds at most `ceiling`."""

    async def in_flight(self, key_id: str) -> int:
        """The slots the key holds: its jobs admitted and not yet ended."""

    async def minute_tokens(self, key_id: str, minute: str) -> int:
        """Tokens of the key's jobs that ended in `minute`."""

    async def move_key_counters(self, deltas: KeyDeltas) -> None:
        """Move a key's counters outside a job's change (slots and tokens given back when a
        submit is refused before its jobs were stored)."""


class KeyStore(Protocol):
    """Run-time API keys (shared/keys.py): records keyed by id, found by the keyed hash of their
    secret. The store never sees a secret, only its hash."""

    async def create_key(self, record: ApiKeyRecord) -> ApiKeyRecord:
        """Store a new key. Raises Conflict when its id or hash is taken."""

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key whose current secret hashes to `key_hash`, or whose previous one does while
        its grace period lasts; None otherwise (whatever its status: the caller checks it).
        A consistent read of a key (or two): no listing, no scan."""

    async def list_keys(
        self, *, tenant: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[ApiKeyRecord], str | None]:
        """Keys (of one tenant, or all) newest first, with an opaque cursor for the next page.
        Raises InvalidCursor for a cursor this store did not make."""

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Mark the key revoked at `at` (once: a second revocation keeps the first time).
        The key as now stored, or None when there is none."""

    async def rotate_key(
        self,
        key_id: str,
        *,
        expect_hash: str,
        new_hash: str,
        new_prefix: str,
        previous_valid_until: datetime | None,
    ) -> ApiKeyRecord | None:
        """Give an unrevoked key a new secret, only while its current hash is still
        `expect_hash` (a compare-and-set: of two rotations from the same read, one wins). The
        old secret stays valid until `previous_valid_until` (None: not at all); a secret older
        than that one stops now. The key as now stored, or None when the condition failed."""

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Record that the key was used at `at` (kept only if later than what is stored).
        Callers throttle it (shared/key_service.py): never a write per request."""


class Store(
    JobStore,
    BatchStore,
    WebhookOutbox,
    UsageStore,
    CoalescingStore,
    RecordRetention,
    AdminStore,
    KeyCounters,
    KeyStore,
    Protocol,
):
    """What one storage technology provides; the composition root hands out its narrower ports."""


class ResultCache(Protocol):
    """Completed results by cache key, with a time to live."""

    async def get(self, key: str) -> Completion | None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The hits among `keys`, in one round trip where the backend allows it."""

    async def set(self, key: str, value: Completion, ttl_s: int) -> None: ...

    async def delete(self, key: str) -> None:
        """Forget the entry (an erased job's answer); no error when there is none."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class JobQueue(Protocol):
    """Where accepted jobs wait for a worker. Delivery is at least once."""

    async def start(self, handler: JobHandler | None = None) -> None:
        """Connect. An in-process queue also starts its workers, which call `handler(job_id)`."""

    async def close(self) -> None: ...

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        """Raise QueueUnavailable when the queue cannot take the job.

        `lane`: the job's priority and tenant (shared/lanes.py says the order they are taken
        in); None: the lane of the delivery running now (a retry keeps its place), else
        `normal` for no tenant."""

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        """Enqueue a batch's jobs in one pipelined call.

        A higher priority goes first; within a priority, jobs enqueued one by one go ahead of
        batch jobs, and tenants, then a tenant's groups (batches), take turns, so one tenant's
        big batch cannot starve everyone else."""

    async def ping(self) -> bool: ...


class JobWakeups(Protocol):
    """Wakes long-polls when their job ends, so that they need not poll the store.

    A hint, not a record: whoever waits reads the store again when woken (and now and then
    anyway, in case a notification was lost), so a missed or duplicate notification costs time,
    never correctness."""

    async def close(self) -> None: ...

    async def notify(self, job_ids: Sequence[str]) -> None:
        """These jobs have reached a terminal status (call after the write committed). Never
        raises: a notification that cannot be sent is dropped."""

    def watch(self, job_id: str) -> AbstractContextManager[asyncio.Event]:
        """Register interest in `job_id` (before reading it, so no notification is missed);
        the event is set once the job is reported finished."""


class FileStorage(Protocol):
    """Objects by key: the OpenAI dialect's files, their metadata and its batch records
    (shared/files.py lays the keys out; tenants never reach a key of another's).

    Keys are `/`-separated printable ASCII. A write replaces the whole object at once: a reader
    sees the old object or the new one, never a part."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, body: IO[bytes]) -> None:
        """Store what `body` holds from its current position (read in chunks, never whole:
        it may be hundreds of megabytes spooled to disk)."""

    async def get(self, key: str) -> bytes | None:
        """A small object whole (metadata), or None when there is none."""

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """An object's bytes in chunks; raises FileNotFoundError when there is none."""

    async def keys(self, prefix: str, *, start_after: str | None = None, limit: int) -> list[str]:
        """Up to `limit` keys directly in `prefix` (which ends with `/`: a folder, not its
        sub-folders), in ascending order, after `start_after`."""

    async def delete(self, key: str) -> None:
        """Remove the object; no error when there is none."""


class JobStreams(Protocol):
    """Each job's live events (status changes, pieces of its answer) for whoever follows it as
    it runs: in this process, or a Redis Stream per job. Bounded in length and kept a short
    while, never the record: a follower that finds a gap, or nothing, reads the job itself.

    Event ids are opaque, increasing strings; "0" is before the first."""

    async def close(self) -> None: ...

    async def publish(self, job_id: str, event: StreamEvent) -> None:
        """Append an event, in order, perhaps in the background (an event that `ends` the job
        shortens how long it is kept). Never raises and never waits long: an event that cannot
        be sent is dropped, and followers see the gap."""

    async def read(self, job_id: str, after: str, wait_s: float) -> list[tuple[str, StreamEvent]]:
        """The events after id `after`, oldest first, waiting up to `wait_s` for one. Never
        raises: when the channel cannot be read, nothing comes (after the wait)."""


class LLMProvider(Protocol):
    """One LLM backend. Raises TransientLLMError or PermanentLLMError.

    `start()` creates the provider's HTTP client (once per process: per Lambda container);
    `close()` closes it."""

    name: str

    async def start(self) -> None: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """The answer's text as it is written, then one Delta (text "") with the Completion,
        whose content is the text of the deltas. Close it (`aclose`) when leaving early."""

    async def close(self) -> None: ...


class ProviderQuota(Protocol):
    """Each LLM provider's calls and tokens per minute (GEMINI_RPM, …; shared/quotas.py), and
    its pause after a 429 with Retry-After, counted where every worker sees the same numbers:
    Redis, DynamoDB, or this process's memory. Limits are given to the adapter when it is made;
    a provider without limits is only ever paused. Raises when the backend fails (the caller
    then lets the call through: shared/adapters/llm/quoted.py)."""

    async def acquire(self, provider: str) -> float:
        """Take a slot for one call now: 0.0 when taken; else the seconds until one may be (the
        provider is paused, or its calls or tokens of the last minute are spent), nothing
        taken."""

    async def wait_s(self, provider: str) -> float:
        """What `acquire` would answer now, with nothing taken."""

    async def spend_tokens(self, provider: str, tokens: int) -> None:
        """Count a finished call's tokens (its reported usage) against the provider's tokens
        per minute."""

    async def pause(self, provider: str, seconds: float) -> None:
        """Let no call reach the provider for `seconds` from now (a longer pause already set
        stays)."""

    async def close(self) -> None: ...
