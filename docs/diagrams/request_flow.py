"""03: one job's way through the code, from the submit to the webhook or the poll."""

from __future__ import annotations

import itertools
from pathlib import Path

from diagram_parts import FALLBACK, FAST_PATH, canvas, edge, group, node
from diagram_parts import Component as C

FILENAME = "03_request_flow"
TITLE = "chatjobs: request flow (POST /v1/jobs)"

CLIENT = C(
    "create_job\nPOST /v1/jobs",
    "code",
    "api.routes.jobs:create_job",
    "diagrams.onprem.client.Users",
)
AUTH = C("authenticate\nBearer key → tenant (401)", "code", "api.auth:authenticate", "step")
VALIDATE = C("JobCreate\nvalidated body (413, 422)", "code", "shared.models:JobCreate", "step")
LIMIT = C(
    "enforce_rate_limit\nRATE_LIMIT per tenant (429)",
    "code",
    "api.ratelimit:enforce_rate_limit",
    "step",
)
MODELS = C(
    "ModelCatalog.check\nserved models only (422)",
    "code",
    "shared.model_catalog:ModelCatalog.check",
    "step",
)
KEY = C("cache_key\nSHA-256 of tenant + request", "code", "shared.service:cache_key", "step")
LOOKUP = C("ResultCache.get\ncache check", "code", "shared.ports:ResultCache.get", "step")
HIT = C(
    "ChatService.submit\nhit: stored as cached,\n200 at once",
    "code",
    "shared.service:ChatService.submit",
    "fast",
)
ADMIT = C(
    "Admission.admit\nover MAX_QUEUED_JOBS:\n503 overloaded + Retry-After",
    "code",
    "shared.admission:Admission.admit",
    "step",
)
CREATE = C(
    "JobStore.create_job\nmiss: status queued",
    "code",
    "shared.ports:JobStore.create_job",
    "step",
)
REPLAY = C(
    "body_hash\nIdempotency-Key seen: the same job\n(another body: 409)",
    "code",
    "shared.service:body_hash",
    "step",
)
ENQUEUE = C(
    "JobQueue.enqueue\n202 + Location\n(refused: 503 queue_unavailable)",
    "code",
    "shared.ports:JobQueue.enqueue",
    "step",
)
RUN = C(
    "JobExecutor.run\nclaim: queued → running", "code", "shared.execution:JobExecutor.run", "step"
)
COMPLETE = C(
    "FallbackLLM.complete\ncircuit breakers",
    "code",
    "shared.adapters.llm.fallback:FallbackLLM.complete",
    "step",
)
GEMINI = C(
    "GeminiProvider\nfirst",
    "code",
    "shared.adapters.llm.gemini:GeminiProvider",
    "diagrams.gcp.ml.AIPlatform",
)
OPENROUTER = C(
    "OpenRouterProvider\nfallback",
    "code",
    "shared.adapters.llm.openrouter:OpenRouterProvider",
    "diagrams.onprem.network.Internet",
)
RETRY = C(
    "RetryPolicy.allows\nwithin JOB_RETRY_BUDGET_S?",
    "code",
    "shared.retry:RetryPolicy.allows",
    "step",
)
REQUEUE = C(
    "JobWrites.requeue\nqueued again, error: retrying,\nnot before the backoff",
    "code",
    "shared.job_writes:JobWrites.requeue",
    "step",
)
FINISH = C(
    "JobWrites.finish\nresult + webhook outbox,\none conditional write",
    "code",
    "shared.job_writes:JobWrites.finish",
    "step",
)
FILL = C(
    "ResultCache.set\ncache fill (CACHE_TTL_S)", "code", "shared.ports:ResultCache.set", "step"
)
DELIVER = C(
    "WebhookDispatcher.deliver_due\nsigned POST, retried",
    "code",
    "shared.webhooks:WebhookDispatcher.deliver_due",
    "step",
)
POLL = C("get_job\nGET /v1/jobs/{id}?wait=30", "code", "api.routes.jobs:get_job", "step")

COMPONENTS = [
    CLIENT,
    AUTH,
    VALIDATE,
    LIMIT,
    MODELS,
    KEY,
    LOOKUP,
    HIT,
    ADMIT,
    CREATE,
    REPLAY,
    ENQUEUE,
    RUN,
    COMPLETE,
    GEMINI,
    OPENROUTER,
    RETRY,
    REQUEUE,
    FINISH,
    FILL,
    DELIVER,
    POLL,
]


def draw(out_dir: Path, render: bool = True) -> None:
    # top to bottom, so the page is about as wide as it is tall and the labels stay readable
    with canvas(
        TITLE,
        out_dir / FILENAME,
        render=render,
        direction="TB",
        splines="spline",
        ranksep="0.45",
        nodesep="0.35",
    ):
        client, poll = node(CLIENT), node(POLL)
        with group("API process: api/ and ChatService.submit"):
            steps = [node(c) for c in (AUTH, VALIDATE, LIMIT, MODELS, KEY, LOOKUP)]
            hit, admit = node(HIT), node(ADMIT)
            create, replay, enqueue = node(CREATE), node(REPLAY), node(ENQUEUE)
        with group("worker: JobExecutor (in-process, arq, SQS Lambda)"):
            run, complete = node(RUN), node(COMPLETE)
            gemini, openrouter = node(GEMINI), node(OPENROUTER)
            retry, requeue = node(RETRY), node(REQUEUE)
            finish, fill, deliver = node(FINISH), node(FILL), node(DELIVER)

        # answers go back up to the client: drawn as `a << b` (ranked a above b), or without
        # moving anything (constraint false)
        back = {"constraint": "false"}
        client >> edge() >> steps[0]
        for before, after in itertools.pairwise(steps):
            before >> edge() >> after
        steps[-1] >> edge("hit", color=FAST_PATH, penwidth="2.5") >> hit
        client << edge("200, cached: true", color=FAST_PATH, penwidth="2.5") << hit
        steps[-1] >> edge("miss") >> admit >> edge("admitted") >> create
        create >> edge("key seen") >> replay
        replay >> edge("200/202 the same job", **back) >> client
        create >> edge("new") >> enqueue >> edge("queue message") >> run
        run >> edge() >> complete
        complete >> edge("first") >> gemini
        complete >> edge("transient error,\nopen circuit", color=FALLBACK) >> openrouter
        [gemini, openrouter] >> edge("answer") >> finish
        complete >> edge("both failed\n(transient)", color=FALLBACK) >> retry
        retry >> edge("yes", color=FALLBACK) >> requeue
        run << edge("again after the delay", color=FALLBACK, style="dashed") << requeue
        retry >> edge("no: failed,\nllm_unavailable", color=FALLBACK) >> finish
        finish >> edge("succeeded") >> fill >> edge() >> deliver
        deliver >> edge("webhook: job.succeeded", **back) >> client
        client >> edge("or poll", style="dashed", **back) >> poll
        poll >> edge("reads", style="dashed", **back) >> finish
