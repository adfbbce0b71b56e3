"""Adapters chosen from Settings: one `build_*` per port, each importing its driver only in the
branch that uses it, and nothing connecting before `start()`. Only the composition root
(shared/factory.py) calls these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters.aws.clients import AwsClients
from shared.adapters.ratelimit import RateWindow
from shared.config import Settings
from shared.dead_letters import NoDeadLetters
from shared.ports import (
    DeadLetters,
    FileStorage,
    JobQueue,
    JobStreams,
    JobWakeups,
    LLMProvider,
    ProviderQuota,
    ResultCache,
    Store,
    WorkerRegistry,
)
from shared.sweeps import SweepPolicy, all_lost, none_lost

if TYPE_CHECKING:
    from shared.adapters.queue.sqs import SqsJobQueue


class Adapters:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        kinds = (s.resolved_store, s.resolved_queue, s.resolved_cache)
        # built now (it connects on first use), shared by every AWS adapter of the process
        self.aws_clients = (
            AwsClients(endpoint_url=s.aws_endpoint_url, region=s.aws_region)
            if any(k in ("dynamodb", "sqs") for k in kinds) or s.resolved_files == "s3"
            else None
        )

    @property
    def aws(self) -> AwsClients:
        if self.aws_clients is None:
            raise RuntimeError("no AWS backend is configured")
        return self.aws_clients

    def store(self) -> Store:
        s = self.settings
        if s.resolved_store == "dynamodb":
            from shared.adapters.store.dynamodb import DynamoDbJobStore

            return DynamoDbJobStore(self.aws, s.dynamodb_table, retention=s.job_retention)
        from shared.adapters.store.sqlite import SqliteJobStore

        return SqliteJobStore(s.sqlite_path, retention=s.job_retention)

    def cache(self) -> ResultCache | None:
        s = self.settings
        kind = s.resolved_cache
        if kind == "none":
            return None
        if kind == "redis":
            from shared.adapters.cache.redis import RedisResultCache

            return RedisResultCache(require(s.redis_url, "REDIS_URL", "CACHE_BACKEND=redis"))
        if kind == "dynamodb":
            from shared.adapters.cache.dynamodb import DynamoDbResultCache

            return DynamoDbResultCache(self.aws, s.dynamodb_table)
        from shared.adapters.cache.memory import MemoryResultCache

        return MemoryResultCache(max_entries=s.cache_max_entries)

    def queue(self) -> JobQueue:
        s = self.settings
        kind = s.resolved_queue
        if kind == "arq":
            from shared.adapters.queue.arq import ArqJobQueue

            return ArqJobQueue(require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        if kind == "sqs":
            from shared.adapters.queue.sqs import SqsJobQueue

            url = require(s.sqs_queue_url, "SQS_QUEUE_URL", "QUEUE_BACKEND=sqs")
            return SqsJobQueue(
                self.aws,
                url,
                s.sqs_batch_queue_url,
                high_queue_url=s.sqs_high_queue_url,
                low_queue_url=s.sqs_low_queue_url,
            )
        from shared.adapters.queue.inprocess import InProcessJobQueue

        return InProcessJobQueue(concurrency=s.worker_concurrency)

    def dead_letters(self) -> DeadLetters:
        """The job queues' dead-letter queues: SQS's in the AWS layout; the others have none
        (a job that fails for good is a failed job in the store)."""
        s = self.settings
        if s.resolved_queue != "sqs":
            return NoDeadLetters()
        from shared.adapters.queue.sqs import source_queues
        from shared.adapters.queue.sqs_dead_letters import SqsDeadLetters

        url = require(s.sqs_queue_url, "SQS_QUEUE_URL", "QUEUE_BACKEND=sqs")
        sources = source_queues(
            url, s.sqs_batch_queue_url, s.sqs_high_queue_url, s.sqs_low_queue_url
        )
        return SqsDeadLetters(self.aws, sources)

    def wakeups(self) -> JobWakeups | None:
        """Long-poll wake-ups: in this process when it runs the jobs, over Redis when arq
        workers do; None with SQS (the store is polled briefly instead)."""
        s = self.settings
        kind = s.resolved_queue
        if kind == "inprocess":
            from shared.adapters.wakeups.local import LocalJobWakeups

            return LocalJobWakeups()
        if kind == "arq":
            from shared.adapters.wakeups.redis import RedisJobWakeups

            return RedisJobWakeups(require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        return None

    def files(self) -> FileStorage | None:
        """The OpenAI dialect's files: S3 in the AWS layout, else a local directory; None on
        Lambda without FILES_BUCKET (the files and batches endpoints answer 503)."""
        s = self.settings
        kind = s.resolved_files
        if kind == "none":
            return None
        if kind == "s3":
            from shared.adapters.files.s3 import S3FileStorage

            bucket = require(s.files_bucket, "FILES_BUCKET", "FILES_BACKEND=s3")
            return S3FileStorage(self.aws, bucket)
        from shared.adapters.files.local import LocalFileStorage

        return LocalFileStorage(s.files_dir)

    def streams(self) -> JobStreams | None:
        """Jobs' live events (answers streamed as written): in this process when it runs the
        jobs, Redis Streams when arq workers do; None with SQS (followers read the job record:
        the whole answer comes at the end)."""
        s = self.settings
        kind = s.resolved_queue
        if kind == "inprocess":
            from shared.adapters.streams.local import LocalJobStreams

            return LocalJobStreams()
        if kind == "arq":
            from shared.adapters.streams.redis import RedisJobStreams

            return RedisJobStreams(require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        return None

    def workers(self) -> WorkerRegistry:
        """Where workers' heartbeats go: Redis when arq workers run the jobs, the table on AWS,
        else this process (embedded: the API is the worker)."""
        s = self.settings
        if s.resolved_queue == "arq":
            from shared.adapters.heartbeats.redis import RedisWorkerRegistry

            return RedisWorkerRegistry(require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        if s.resolved_store == "dynamodb":
            from shared.adapters.heartbeats.dynamodb import DynamoDbWorkerRegistry

            return DynamoDbWorkerRegistry(self.aws, s.dynamodb_table)
        from shared.adapters.heartbeats.memory import MemoryWorkerRegistry

        return MemoryWorkerRegistry()

    def llm(self, quota: ProviderQuota | None = None) -> LLMProvider:
        from shared.adapters.llm.build import build_llm

        return build_llm(self.settings, quota)

    def provider_quota(self) -> ProviderQuota:
        """The providers' quotas and 429 pauses (docs/adr/0014), where every worker counts them:
        Redis with REDIS_URL, DynamoDB in the AWS layout, else this process's memory (embedded:
        the one worker)."""
        from shared.quotas import quota_limits

        s, limits = self.settings, quota_limits(self.settings)
        if s.redis_url:
            from shared.adapters.quota.redis import RedisProviderQuota

            return RedisProviderQuota(s.redis_url, limits)
        if s.resolved_store == "dynamodb":
            from shared.adapters.quota.dynamodb import DynamoDbProviderQuota

            return DynamoDbProviderQuota(self.aws, s.dynamodb_table, limits)
        from shared.adapters.quota.memory import MemoryProviderQuota

        return MemoryProviderQuota(limits)

    def sweep_policy(self, queue: JobQueue) -> SweepPolicy:
        """How the lost-job sweep treats this queue, from the queue's own redelivery horizon."""
        s = self.settings
        if s.resolved_queue == "arq":
            from shared.adapters.queue.arq import ArqJobQueue, redelivery_horizon_s

            if isinstance(queue, ArqJobQueue):
                after = max(s.lost_job_after_s, redelivery_horizon_s(s) + SWEEP_SLACK_S)
                return SweepPolicy(after, lost=queue.lost, lock=queue.lock)
        if s.resolved_queue == "sqs":
            from shared.adapters.queue.sqs import REDELIVERY_HORIZON_S

            return SweepPolicy(REDELIVERY_HORIZON_S + SWEEP_SLACK_S, lost=all_lost)
        # in process: the queue holds what it was given for as long as the process lives
        return SweepPolicy(s.job_timeout_s + SWEEP_SLACK_S, lost=none_lost)

    def sqs(self, queue: JobQueue) -> SqsJobQueue | None:
        """The queue as the SQS consumers need it, when it is SQS."""
        if self.settings.resolved_queue != "sqs":
            return None
        from shared.adapters.queue.sqs import SqsJobQueue

        return queue if isinstance(queue, SqsJobQueue) else None

    def rate_window(self) -> RateWindow:
        """The window RATE_LIMIT and AUTH_FAILURE_LIMIT are counted in: Redis with REDIS_URL
        (every API process shares it), DynamoDB in the AWS layout (Lambda containers share no
        memory), else this process's memory."""
        s = self.settings
        if s.redis_url:
            from shared.adapters.ratelimit.redis import RedisRateWindow

            return RedisRateWindow(s.redis_url)
        if s.resolved_store == "dynamodb":
            from shared.adapters.ratelimit.dynamodb import DynamoDbRateWindow

            return DynamoDbRateWindow(self.aws, s.dynamodb_table)
        from shared.adapters.ratelimit.memory import MemoryRateWindow

        return MemoryRateWindow()


SWEEP_SLACK_S = 2.0


def require(value: str | None, name: str, because: str) -> str:
    if not value:
        raise ValueError(f"{name} must be set when {because}")
    return value
