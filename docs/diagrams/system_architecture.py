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
LIMITER = C("TenantRateLimiter\napi/ratelimit.py", "code", "api.ratelimit:TenantRateLimiter")
# ports (shared/ports.py, typing.Protocol)
JOB_STORE = C("JobStore", "code", "shared.ports:JobStore", "port")
BATCH_STORE = C("BatchStore", "code", "shared.ports:BatchStore", "port")
OUTBOX = C("WebhookOutbox", "code", "shared.ports:WebhookOutbox", "port")
STORE = C("Store\nall three, one technology", "code", "shared.ports:Store", "port")
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
    LIMITER,
    JOB_STORE,
    BATCH_STORE,
    OUTBOX,
    STORE,
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
    DYNAMO_WINDOW,
]


def draw(out_dir: Path, render: bool = True) -> None:
    with canvas(TITLE, out_dir / FILENAME, render=render, splines="spline", ranksep="1.0"):
        with group("entry points: api/, worker/"):
            entries = [node(c) for c in (APP, ARQ, POLLER, LAMBDA)]
        with group("composition root"):
            factory, services = node(FACTORY), node(SERVICES)
        with group("use cases"):
            chat, batches, executor, webhooks, sweeper = (
                node(c) for c in (CHAT, BATCHES, EXECUTOR, WEBHOOKS, SWEEPER)
            )
            limiter = node(LIMITER)
        with group("ports: shared/ports.py (typing.Protocol)", "#FFFCEF"):
            job_store, batch_store, outbox, store = (
                node(c) for c in (JOB_STORE, BATCH_STORE, OUTBOX, STORE)
            )
            cache, queue, llm, window = (node(c) for c in (CACHE, QUEUE, LLM, WINDOW))
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
            with group("ratelimit/"):
                dynamo_window = node(DYNAMO_WINDOW)

        uses, implements = edge(), edge(style="dashed", arrowhead="onormal")
        entries >> edge() >> factory
        factory >> edge("builds the adapters,\nwires, starts") >> services
        services >> uses >> [chat, batches, executor, webhooks, sweeper]
        entries[0] >> uses >> limiter
        chat >> uses >> [job_store, cache, queue]
        batches >> uses >> [batch_store, cache, queue]
        executor >> uses >> [job_store, cache, llm]
        webhooks >> uses >> outbox
        sweeper >> uses >> [store, queue]
        limiter >> edge("on AWS") >> window
        [job_store, batch_store, outbox] >> edge(style="dotted", arrowhead="none") >> store
        store >> implements >> stores
        cache >> implements >> caches
        queue >> implements >> queues
        llm >> implements >> [fallback, offline]
        fallback >> uses >> providers
        fallback >> uses >> circuit
        window >> implements >> dynamo_window
