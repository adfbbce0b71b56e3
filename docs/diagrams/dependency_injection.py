"""05: how ServiceFactory turns the environment into one wired set of services."""

from __future__ import annotations

from pathlib import Path

from diagram_parts import Component as C
from diagram_parts import canvas, edge, group, node

FILENAME = "05_dependency_injection"
TITLE = "chatjobs: dependency injection (environment → adapters → services)"

# 1. environment detection
LAMBDA = C(
    "running_on_lambda\nAWS_LAMBDA_FUNCTION_NAME set?",
    "code",
    "shared.config:running_on_lambda",
    "port",
)
SETTINGS = C("Settings\nenvironment > secret > .env", "code", "shared.config:Settings", "port")
SECRET = C(
    "SecretsManagerSource\nAWS_SECRET_ID",
    "code",
    "shared.secrets_source:SecretsManagerSource",
    "port",
)
ENV = [
    C("REDIS_URL", "env", "REDIS_URL", "step"),
    C("STORE_BACKEND", "env", "STORE_BACKEND", "step"),
    C("QUEUE_BACKEND", "env", "QUEUE_BACKEND", "step"),
    C("CACHE_BACKEND", "env", "CACHE_BACKEND", "step"),
    C("GEMINI_API_KEY", "env", "GEMINI_API_KEY", "step"),
    C("OPENROUTER_API_KEY", "env", "OPENROUTER_API_KEY", "step"),
]
# 2. adapter choice
RESOLVED = [
    C("Settings.resolved_store", "code", "shared.config:Settings.resolved_store", "port"),
    C("Settings.resolved_queue", "code", "shared.config:Settings.resolved_queue", "port"),
    C("Settings.resolved_cache", "code", "shared.config:Settings.resolved_cache", "port"),
    C("build_llm\nkeys present?", "code", "shared.adapters.llm.build:build_llm", "port"),
    C(
        "Settings.resolved_queue\nwho runs the jobs?",
        "code",
        "shared.config:Settings.resolved_queue",
        "port",
    ),
    C("REDIS_URL unset and\nthe store is DynamoDB?", "env", "REDIS_URL", "port"),
]
BUILD = [
    C("Adapters.store", "code", "shared.adapters.choose:Adapters.store"),
    C("Adapters.queue", "code", "shared.adapters.choose:Adapters.queue"),
    C("Adapters.cache", "code", "shared.adapters.choose:Adapters.cache"),
    C("Adapters.llm", "code", "shared.adapters.choose:Adapters.llm"),
    C("Adapters.wakeups", "code", "shared.adapters.choose:Adapters.wakeups"),
    C("Adapters.rate_window", "code", "shared.adapters.choose:Adapters.rate_window"),
]
ADAPTERS = [  # (choice label, component), per builder above
    [
        ("sqlite", C("SqliteJobStore", "code", "shared.adapters.store.sqlite:SqliteJobStore")),
        (
            "dynamodb",
            C("DynamoDbJobStore", "code", "shared.adapters.store.dynamodb:DynamoDbJobStore"),
        ),
    ],
    [
        (
            "inprocess",
            C("InProcessJobQueue", "code", "shared.adapters.queue.inprocess:InProcessJobQueue"),
        ),
        ("arq", C("ArqJobQueue", "code", "shared.adapters.queue.arq:ArqJobQueue")),
        ("sqs", C("SqsJobQueue", "code", "shared.adapters.queue.sqs:SqsJobQueue")),
    ],
    [
        (
            "memory",
            C("MemoryResultCache", "code", "shared.adapters.cache.memory:MemoryResultCache"),
        ),
        ("redis", C("RedisResultCache", "code", "shared.adapters.cache.redis:RedisResultCache")),
        (
            "dynamodb",
            C("DynamoDbResultCache", "code", "shared.adapters.cache.dynamodb:DynamoDbResultCache"),
        ),
    ],
    [
        (
            "a key",
            C(
                "FallbackLLM\nGemini → OpenRouter",
                "code",
                "shared.adapters.llm.fallback:FallbackLLM",
            ),
        ),
        ("no key", C("OfflineProvider", "code", "shared.adapters.llm.offline:OfflineProvider")),
    ],
    [
        (
            "inprocess",
            C("LocalJobWakeups", "code", "shared.adapters.wakeups.local:LocalJobWakeups"),
        ),
        ("arq", C("RedisJobWakeups", "code", "shared.adapters.wakeups.redis:RedisJobWakeups")),
        # sqs: none; a long-poll reads the store briefly instead
    ],
    [
        (
            "yes",
            C(
                "DynamoDbRateWindow\nshared by Lambda containers",
                "code",
                "shared.adapters.ratelimit.dynamodb:DynamoDbRateWindow",
            ),
        ),
        (
            "no: None; memory,\nor Redis with REDIS_URL",
            C("MemoryRateWindow", "code", "shared.adapters.ratelimit.memory:MemoryRateWindow"),
        ),
        # with REDIS_URL, TenantRateLimiter keeps its window in Redis (the limits package)
    ],
]
# 3. service wiring
START = C("ServiceFactory.start\none AsyncExitStack", "code", "shared.factory:ServiceFactory.start")
SERVICES = C("Services\nfrozen, no behaviour", "code", "shared.services:Services")
USE_CASES = [
    C("ChatService", "code", "shared.service:ChatService"),
    C("BatchService", "code", "shared.batches:BatchService"),
    C("JobExecutor", "code", "shared.execution:JobExecutor"),
    C("WebhookDispatcher", "code", "shared.webhooks:WebhookDispatcher"),
    C("Sweeper", "code", "shared.sweeps:Sweeper"),
    C("FinishedJobs", "code", "shared.finished:FinishedJobs"),
    C("BackgroundTasks", "code", "shared.background:BackgroundTasks"),
]
CALLERS = [
    C("create_app\nlifespan: app.state;\nthe rate window", "code", "api.app:create_app", "step"),
    C("Supervisor.run\narq worker process", "code", "worker.supervisor:Supervisor.run", "step"),
    C("LambdaRuntime\nonce per container", "code", "shared.lambda_runtime:LambdaRuntime", "step"),
]

COMPONENTS = [
    LAMBDA,
    SETTINGS,
    SECRET,
    *ENV,
    *RESOLVED,
    *BUILD,
    *(c for choices in ADAPTERS for _, c in choices),
    START,
    SERVICES,
    *USE_CASES,
    *CALLERS,
]


def draw(out_dir: Path, render: bool = True) -> None:
    with canvas(TITLE, out_dir / FILENAME, render=render, splines="spline", ranksep="0.9"):
        with group("1. environment detection: shared/config.py"):
            on_lambda, settings, secret = node(LAMBDA), node(SETTINGS), node(SECRET)
            env = [node(c) for c in ENV]
        with group("2. adapter choice: Adapters (shared/adapters/choose.py)"):
            resolved = [node(c) for c in RESOLVED]
            builders = [node(c) for c in BUILD]
            adapters = [[(label, node(c)) for label, c in choices] for choices in ADAPTERS]
        with group("3. service wiring"):
            start, services = node(START), node(SERVICES)
            use_cases = [node(c) for c in USE_CASES]
        with group("callers: ServiceFactory(settings).start()"):
            callers = [node(c) for c in CALLERS]

        env >> edge() >> settings
        secret >> edge("on AWS") >> settings
        on_lambda >> edge("defaults: dynamodb, sqs") >> settings
        settings >> edge() >> resolved
        # the rate window is the API's own: create_app hands it to TenantRateLimiter
        wired_into = [start] * (len(builders) - 1) + [callers[0]]
        for decided, builder, choices, into in zip(
            resolved, builders, adapters, wired_into, strict=True
        ):
            decided >> edge() >> builder
            for label, adapter in choices:
                builder >> edge(label) >> adapter
                adapter >> edge(style="dotted", arrowhead="none") >> into
        start >> edge() >> services >> edge() >> use_cases
        services >> edge("returned to", style="dashed") >> callers
