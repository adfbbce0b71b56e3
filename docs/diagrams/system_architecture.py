"""01: the entry points, the one composition root, the use cases, the ports and every adapter."""

from __future__ import annotations

from pathlib import Path

from diagram_parts import Component as C
from diagram_parts import canvas, edge, group, node

FILENAME = "01_system_architecture"
TITLE = "chatjobs: system architecture (ports and adapters)"

# entry points
APP = C("create_app\nFastAPI, python -m api", "code", "api.app:create_app")
ARQ = C("Supervisor\narq Workers, python -m worker", "code", "worker.supervisor:Supervisor")
POLLER = C("sqs_poller\nSQS long polling", "code", "worker.sqs_poller")
LAMBDA = C("LambdaRuntime\nAPI, worker, scheduled", "code", "shared.lambda_runtime:LambdaRuntime")
# composition root
FACTORY = C("ServiceFactory\nshared/factory.py", "code", "shared.factory:ServiceFactory")
SERVICES = C("Services\nstarted, closed as one", "code", "shared.services:Services")
# use cases
CHAT = C("ChatService\nsubmit, get, list, cancel", "code", "shared.service:ChatService")
BATCHES = C("BatchService\ncreate, results, cancel", "code", "shared.batches:BatchService")
EXECUTOR = C("JobExecutor\nclaim, LLM, finish", "code", "shared.execution:JobExecutor")
WEBHOOKS = C("WebhookDispatcher\nsigned, retried", "code", "shared.webhooks:WebhookDispatcher")
SWEEPER = C("Sweeper\nlost jobs, open batches", "code", "shared.sweeps:Sweeper")
USAGE = C("UsageService\nGET /v1/usage", "code", "shared.usage_report:UsageService")
LIMITER = C("TenantRateLimiter\napi/ratelimit.py", "code", "api.ratelimit:TenantRateLimiter")
# ports (shared/ports.py, typing.Protocol)
JOB_STORE = C("JobStore", "code", "shared.ports:JobStore", "port")
BATCH_STORE = C("BatchStore", "code", "shared.ports:BatchStore", "port")
OUTBOX = C("WebhookOutbox", "code", "shared.ports:WebhookOutbox", "port")
USAGE_STORE = C("UsageStore", "code", "shared.ports:UsageStore", "port")
RETENTION = C("RecordRetention", "code", "shared.ports:RecordRetention", "port")
STORE = C("Store\nall five, one technology", "code", "shared.ports:Store", "port")
EVENTS = C("JobWakeups\nlong-poll wake-ups", "code", "shared.ports:JobWakeups", "port")
CACHE = C("ResultCache", "code", "shared.ports:ResultCache", "port")
QUEUE = C("JobQueue", "code", "shared.ports:JobQueue", "port")
LLM = C("LLMProvider", "code", "shared.ports:LLMProvider", "port")
WINDOW = C("RateWindow", "code", "shared.adapters.ratelimit:RateWindow", "port")
# adapters
STORES = [
    C("SqliteJobStore\nembedded, Compose", "code", "shared.adapters.store.sqlite:SqliteJobStore"),
    C("DynamoDbJobStore\nAWS", "code", "shared.adapters.store.dynamodb:DynamoDbJobStore"),
]
CACHES = [
    C("MemoryResultCache\nTTL + LRU", "code", "shared.adapters.cache.memory:MemoryResultCache"),
    C("RedisResultCache\nREDIS_URL", "code", "shared.adapters.cache.redis:RedisResultCache"),
    C(
        "DynamoDbResultCache\nitems with TTL",
        "code",
        "shared.adapters.cache.dynamodb:DynamoDbResultCache",
    ),
]
QUEUES = [
    C(
        "InProcessJobQueue\nasyncio workers",
        "code",
        "shared.adapters.queue.inprocess:InProcessJobQueue",
    ),
    C("ArqJobQueue\nRedis", "code", "shared.adapters.queue.arq:ArqJobQueue"),
    C("SqsJobQueue\njobs + batch queues", "code", "shared.adapters.queue.sqs:SqsJobQueue"),
]
FALLBACK = C(
    "FallbackLLM\nprimary, then fallback", "code", "shared.adapters.llm.fallback:FallbackLLM"
)
CIRCUIT = C(
    "CircuitBreaker\nskips a failing primary", "code", "shared.adapters.llm.circuit:CircuitBreaker"
)
PROVIDERS = [
    C("GeminiProvider\nfirst", "code", "shared.adapters.llm.gemini:GeminiProvider"),
    C("OpenRouterProvider\nfallback", "code", "shared.adapters.llm.openrouter:OpenRouterProvider"),
]
OFFLINE = C("OfflineProvider\nno key set", "code", "shared.adapters.llm.offline:OfflineProvider")
EVENT_ADAPTERS = [
    C("LocalJobWakeups\nin this process", "code", "shared.adapters.wakeups.local:LocalJobWakeups"),
    C("RedisJobWakeups\nRedis pub/sub", "code", "shared.adapters.wakeups.redis:RedisJobWakeups"),
]
MEMORY_WINDOW = C(
    "MemoryRateWindow\none process", "code", "shared.adapters.ratelimit.memory:MemoryRateWindow"
)
DYNAMO_WINDOW = C(
    "DynamoDbRateWindow\nshared by Lambdas",
    "code",
    "shared.adapters.ratelimit.dynamodb:DynamoDbRateWindow",
)

COMPONENTS = [
    APP,
    ARQ,
    POLLER,
    LAMBDA,
    FACTORY,
    SERVICES,
    CHAT,
    BATCHES,
    EXECUTOR,
    WEBHOOKS,
    SWEEPER,
    USAGE,
    LIMITER,
    JOB_STORE,
    BATCH_STORE,
    OUTBOX,
    USAGE_STORE,
    RETENTION,
    STORE,
    EVENTS,
    CACHE,
    QUEUE,
    LLM,
    WINDOW,
    *STORES,
    *CACHES,
    *QUEUES,
    FALLBACK,
    CIRCUIT,
    *PROVIDERS,
    OFFLINE,
    *EVENT_ADAPTERS,
    MEMORY_WINDOW,
    DYNAMO_WINDOW,
]


def draw(out_dir: Path, render: bool = True) -> None:
    with canvas(TITLE, out_dir / FILENAME, render=render, splines="spline", ranksep="1.0"):
        with group("entry points: api/, worker/"):
            entries = [node(c) for c in (APP, ARQ, POLLER, LAMBDA)]
        with group("composition root"):
            factory, services = node(FACTORY), node(SERVICES)
        with group("use cases"):
            chat, batches, executor, webhooks, sweeper, usage = (
                node(c) for c in (CHAT, BATCHES, EXECUTOR, WEBHOOKS, SWEEPER, USAGE)
            )
            limiter = node(LIMITER)
        with group("ports: shared/ports.py (typing.Protocol)", "#FFFCEF"):
            store_parts = [
                node(c) for c in (JOB_STORE, BATCH_STORE, OUTBOX, USAGE_STORE, RETENTION)
            ]
            job_store, batch_store, outbox, usage_store, _ = store_parts
            store = node(STORE)
            cache, queue, llm, window = (node(c) for c in (CACHE, QUEUE, LLM, WINDOW))
            events = node(EVENTS)
        with group("adapters: shared/adapters/", "#EEF5EC"):
            with group("store/"):
                stores = [node(c) for c in STORES]
            with group("cache/"):
                caches = [node(c) for c in CACHES]
            with group("queue/"):
                queues = [node(c) for c in QUEUES]
            with group("llm/"):
                fallback, offline = node(FALLBACK), node(OFFLINE)
                providers, circuit = [node(c) for c in PROVIDERS], node(CIRCUIT)
            with group("events/"):
                event_adapters = [node(c) for c in EVENT_ADAPTERS]
            with group("ratelimit/"):
                windows = [node(MEMORY_WINDOW), node(DYNAMO_WINDOW)]

        uses, implements = edge(), edge(style="dashed", arrowhead="onormal")
        entries >> edge() >> factory
        factory >> edge("builds the adapters,\nwires, starts") >> services
        services >> uses >> [chat, batches, executor, webhooks, sweeper, usage]
        entries[0] >> uses >> limiter
        chat >> uses >> [job_store, cache, queue, events]
        batches >> uses >> [batch_store, cache, queue]
        executor >> uses >> [job_store, cache, llm, events]
        webhooks >> uses >> outbox
        sweeper >> uses >> [store, queue]
        usage >> uses >> usage_store
        limiter >> edge("without Redis") >> window
        store_parts >> edge(style="dotted", arrowhead="none") >> store
        store >> implements >> stores
        cache >> implements >> caches
        queue >> implements >> queues
        llm >> implements >> [fallback, offline]
        fallback >> uses >> providers
        fallback >> uses >> circuit
        events >> implements >> event_adapters
        window >> implements >> windows
