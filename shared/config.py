"""Settings from the environment (and `.env`). Their names are public: README.md's configuration
table lists every one."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Literal

from limits import parse
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.model_catalog import DEFAULT_FALLBACK, DEFAULT_PRIMARY, ModelCatalog, is_model_name
from shared.retention import retention_of
from shared.secrets_source import SecretsManagerSource

ANONYMOUS_TENANT = "anonymous"


class ApiKey(BaseModel):
    """An API key and the tenant it authenticates."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    key: SecretStr


def _api_keys(value: object) -> object:
    """`tenant1:key1,tenant2:key2` (API_KEYS) → ApiKey items."""
    if not isinstance(value, str):
        return value
    keys = []
    for pair in filter(None, (p.strip() for p in value.split(","))):
        tenant, sep, key = pair.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise ValueError("API_KEYS must look like 'tenant1:key1,tenant2:key2'")
        keys.append({"tenant": tenant.strip(), "key": key.strip()})
    return keys


def _seconds(value: object) -> object:
    """`0,5,300` (WEBHOOK_RETRY_SCHEDULE) → seconds."""
    if not isinstance(value, str):
        return value
    try:
        return [float(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise ValueError("WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from None


def _aliases(value: object) -> object:
    """`fast=gemini-2.5-flash,cheap=openai/gpt-4o-mini` (MODEL_ALIASES) → {alias: model}."""
    if not isinstance(value, str):
        return value
    aliases = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        alias, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not is_model_name(alias) or not is_model_name(target):
            raise ValueError("MODEL_ALIASES must look like 'fast=gemini-2.5-flash,cheap=openai/x'")
        aliases[alias] = target
    return aliases


def _zero_when_empty(value: object) -> object:
    """GEMINI_RPM= (set but empty) means no quota, as unset does."""
    return 0 if isinstance(value, str) and not value.strip() else value


QuotaValue = Annotated[int, BeforeValidator(_zero_when_empty), Field(ge=0)]


def _admin_keys(value: object) -> object:
    """`key1,key2` (ADMIN_API_KEYS) → the keys."""
    if not isinstance(value, str):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


# NoDecode: the environment keeps its plain comma-separated formats (not JSON)
AdminKeys = Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(_admin_keys)]
ApiKeys = Annotated[tuple[ApiKey, ...], NoDecode, BeforeValidator(_api_keys)]
Aliases = Annotated[dict[str, str], NoDecode, BeforeValidator(_aliases)]
Schedule = Annotated[
    tuple[NonNegativeFloat, ...], NoDecode, BeforeValidator(_seconds), Field(min_length=1)
]


def running_on_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


# Values a secret template holds until someone fills it in (docs/DEPLOYMENT.md writes `…`).
PLACEHOLDER_WORDS = frozenset({"changeme", "change-me", "change_me", "replace-me", "todo", "xxx"})


def is_placeholder(value: str) -> bool:
    """`…`, `...`, an empty value or a word such as `changeme`: not a real secret."""
    bare = value.strip()
    return not bare.strip(".…") or bare.lower() in PLACEHOLDER_WORDS


class Settings(BaseSettings):
    """Service configuration. Every field is read from the upper-case environment variable."""

    # hide_input_in_errors: a malformed API_KEYS must not print the keys
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # auth and webhooks
    api_keys: ApiKeys = Field((), description="tenant:key pairs, comma-separated")
    webhook_signing_secret: SecretStr | None = Field(
        None, description="Master secret from which each tenant's whsec_ secret is derived"
    )
    # API keys made at run time (shared/key_service.py, api/routes/admin_keys.py)
    admin_api_keys: AdminKeys = Field(
        (),
        description="Keys of the admin API (/v1/admin/…), comma-separated; unset: no admin API. "
        "With neither API_KEYS nor ADMIN_API_KEYS, the API serves one anonymous tenant",
    )
    key_hash_secret: SecretStr | None = Field(
        None,
        description="Server secret of the HMAC-SHA256 that run-time API keys are stored as; "
        "unset: derived from WEBHOOK_SIGNING_SECRET (then rotating that one invalidates every "
        "run-time key), else (not on Lambda) a random one kept beside the SQLite file",
    )
    key_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="Seconds an API process keeps a run-time key's look-up (found or not): a "
        "revoked key is refused everywhere within this long. 0: look every key up each time",
    )
    webhook_signing_secret_previous: SecretStr | None = Field(
        None,
        description="During a rotation: the master secret WEBHOOK_SIGNING_SECRET replaced; "
        "deliveries carry a signature with it too until "
        "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT",
    )
    webhook_signing_secret_previous_expires_at: AwareDatetime | None = Field(
        None,
        description="When the previous master secret stops signing (ISO 8601 with a time zone, "
        "e.g. 2026-12-01T00:00:00Z); required with WEBHOOK_SIGNING_SECRET_PREVIOUS",
    )
    webhook_allow_private: bool = False
    # the operator console (/console): signed in with an ADMIN_API_KEYS key
    console_session_secret: SecretStr | None = Field(
        None,
        description="Signs the console's session cookie; unset: derived from ADMIN_API_KEYS "
        "(so every API process agrees, and changing the keys signs everyone out)",
    )
    console_session_ttl_s: int = Field(
        8 * 3600, ge=60, description="A console sign-in lasts this long (seconds)"
    )
    worker_heartbeat_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often each worker process records its heartbeat (the console's "
        "workers list); one missing three beats is shown as gone",
    )
    webhook_retry_schedule: Schedule = Field(
        (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        description="Seconds before each webhook delivery attempt, comma-separated",
    )
    webhook_timeout_s: float = 15.0

    # serving
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="`json`: one object a line; `text`: for people; `auto`: text on a "
        "terminal, JSON otherwise",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    rate_limit: str = "120/minute"
    budget_token_estimate: int = Field(
        1000,
        ge=1,
        description="Tokens reserved against a key's monthly_tokens for a request without "
        "max_tokens (a request with it reserves max_tokens); settled to the tokens the job "
        "really used when it ends",
    )
    budget_webhook_url: str | None = Field(
        None,
        description="Where `key.budget_threshold` events go (a key's monthly budget crossing "
        "80%), signed with the key's tenant's webhook secret; unset: no such events",
    )
    auth_failure_limit: str = Field(
        "10/minute",
        description="Wrong API keys allowed from one client address (IPv6: one /64) in a moving "
        "window; past it, every request from there that sends a key answers 429 `rate_limited` "
        "with Retry-After, right key or not, until the window has room again",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="Proxies whose X-Forwarded-For / X-Forwarded-Proto `python -m api` believes "
        "(comma-separated addresses or networks, `*`: any); empty: none, so the TCP peer is the "
        "client address",
    )
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="`python -m api` closes a connection that has not sent a request's line and "
        "headers this long after it opened (or after the request's first byte, on a reused one)",
    )
    http_body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body that sends nothing for this long is answered 408 "
        "`request_timeout` and its connection closed; the rest of a body the API answered "
        "without reading must arrive within it too",
    )
    http_keep_alive_s: int = Field(
        5, ge=1, description="`python -m api` closes a connection idle this long between requests"
    )
    http_max_connections: int | None = Field(
        None,
        ge=1,
        description="Connections `python -m api` holds open; past it a new one closes the one "
        "idle longest, or is answered 503 when every one has a request in progress; unset: half "
        "the process's open-file limit",
    )
    max_body_bytes: int = 1_000_000
    chat_completions_wait_s: float = Field(
        120.0,
        gt=0,
        le=900,
        description="POST /openai/v1/chat/completions holds the answer this long; past it, a "
        "408 `wait_timeout` names the job, which keeps running (read it at /v1/jobs/{id}). "
        "Keep it under the proxy's own limit (API Gateway: 25)",
    )
    batch_max_requests: int = 50_000
    batch_max_bytes: int = 100_000_000
    max_queued_jobs: int = Field(
        100_000,
        ge=0,
        description="Backlog limit: while this many jobs are queued, POST /v1/jobs and "
        "/v1/batches answer 503 (`overloaded`) with Retry-After, and a batch that would take the "
        "backlog past it is refused; cache hits are still answered. 0: no limit",
    )

    # backends
    redis_url: str | None = Field(None, repr=False)  # may hold a password
    queue_backend: Literal["inprocess", "arq", "sqs"] | None = None
    cache_backend: Literal["memory", "redis", "dynamodb", "none"] | None = None
    store_backend: Literal["sqlite", "dynamodb"] | None = None
    sqlite_path: str = "data/chatjobs.db"
    sqs_queue_url: str | None = None
    sqs_batch_queue_url: str | None = Field(
        None, description="SQS queue for batch jobs; unset: batch jobs share SQS_QUEUE_URL"
    )
    # priorities on SQS (docs/adr/0015)
    sqs_high_queue_url: str | None = Field(
        None,
        description="SQS queue for `high` priority jobs, singles and batch jobs, consumed first; "
        "unset: they share the `normal` queues (no priority on SQS)",
    )
    sqs_low_queue_url: str | None = Field(
        None,
        description="SQS queue for `low` priority jobs, singles and batch jobs, consumed last; "
        "unset: they share the `normal` queues",
    )
    dynamodb_table: str = "chatjobs"
    files_backend: Literal["local", "s3", "none"] | None = Field(
        None,
        description="Where /openai/v1/files keeps files: `local` (FILES_DIR), `s3` "
        "(FILES_BUCKET); unset: s3 when FILES_BUCKET is set, else local (none on Lambda)",
    )
    files_dir: str = Field(
        "data/files", description="Directory of the OpenAI-dialect files (and batch records)"
    )
    files_bucket: str | None = Field(
        None, description="S3 bucket of the OpenAI-dialect files in the AWS layout"
    )
    aws_endpoint_url: str | None = Field(
        None, description="Send every AWS call here (moto, LocalStack); unset: AWS itself"
    )
    aws_region: str | None = Field(None, description="AWS region; unset: AWS_REGION / default")
    aws_secret_id: str | None = Field(
        None, description="Secrets Manager secret (JSON) read once at start-up"
    )
    cache_ttl_s: int = 86_400
    job_retention_days: int = Field(
        30,
        ge=0,
        description="Days a job or batch is kept once it has ended, with its result, webhook "
        "state and idempotency key (usage counters stay): DynamoDB expires it by TTL, SQLite "
        "deletes it in the sweep. 0: kept forever",
    )
    cache_max_entries: int = 10_000

    # LLM
    gemini_api_key: SecretStr | None = None
    gemini_model: str = DEFAULT_PRIMARY
    gemini_base_url: str | None = None
    google_genai_use_vertexai: bool = Field(
        False,
        description="Call Gemini on Vertex AI instead of the Gemini API (the google-genai SDK's "
        "own variable): with GOOGLE_CLOUD_PROJECT through Application Default Credentials, "
        "without it with GEMINI_API_KEY (Vertex AI express mode)",
    )
    google_cloud_project: str | None = Field(
        None, description="Vertex AI: the Google Cloud project billed for Gemini calls"
    )
    google_cloud_location: str | None = Field(
        None, description="Vertex AI: the region Gemini is called in (us-central1…); unset: global"
    )
    openrouter_api_key: SecretStr | None = None
    openrouter_model: str = DEFAULT_FALLBACK
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    model_aliases: Aliases = Field(
        default_factory=dict,
        description="Extra model names a request may use, `alias=model` pairs, comma-separated; "
        "a request's `model` must be GEMINI_MODEL, OPENROUTER_MODEL or one of these aliases",
    )
    llm_timeout_s: float = 20.0
    circuit_failure_threshold: int = 5
    circuit_cooldown_s: float = 30.0

    # provider quotas, shared by every worker (docs/adr/0014): unset or 0 means no quota
    gemini_rpm: QuotaValue = Field(
        0,
        description="Gemini calls per minute, counted across every worker process and Lambda "
        "container; a job that would pass it waits, queued, with no attempt spent",
    )
    gemini_tpm: QuotaValue = Field(
        0,
        description="Gemini tokens per minute (input + output), counted from each call's "
        "reported usage when it ends and enforced before the next call",
    )
    openrouter_rpm: QuotaValue = Field(
        0, description="OpenRouter calls per minute, counted like GEMINI_RPM"
    )
    openrouter_tpm: QuotaValue = Field(
        0, description="OpenRouter tokens per minute, counted like GEMINI_TPM"
    )

    # workers
    worker_concurrency: int = 16
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65_535,
        description="Port on which `python -m worker` serves Prometheus /metrics (bound to HOST); "
        "unset: not served",
    )
    worker_outage_limit_s: float = Field(
        60.0,
        gt=0,
        description="How long an arq worker rides out an unreachable Redis (keeping its running "
        "jobs) before it exits with status 1 for its supervisor to restart",
    )
    arq_poll_delay_s: float = Field(
        0.01,
        gt=0,
        le=5,
        description="How often an idle arq worker asks Redis for due jobs (arq's `poll_delay`): "
        "a single job waits half of it on average before it starts; each poll is one Redis "
        "round trip",
    )
    lost_job_after_s: float = Field(
        60.0,
        gt=0,
        description="A job unchanged this long that Redis no longer holds is enqueued again "
        "(never less than a job's lease, LLM timeout-based)",
    )
    job_retry_budget_s: float = Field(
        900.0, gt=0, description="How long after submission a job keeps retrying transient failures"
    )
    job_retry_base_s: float = Field(2.0, gt=0, description="First retry delay; it doubles")
    job_retry_max_delay_s: float = Field(60.0, gt=0, description="Longest delay between retries")
    job_max_attempts: int = Field(
        30, ge=1, description="Guard against a job that keeps crashing its worker"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """init kwargs > environment > Secrets Manager (AWS_SECRET_ID) > .env > defaults.

        Explicit arguments (tests, tools) win. The environment beats the secret so an operator
        can override one value on a function without editing the shared secret (e.g. mid
        rotation). The secret beats .env: a stray .env baked into an image must never shadow
        production secrets."""
        secrets = SecretsManagerSource(settings_cls)
        return init_settings, env_settings, secrets, dotenv_settings, file_secret_settings

    @field_validator("api_keys")
    @classmethod
    def _one_tenant_per_key(cls, keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        values = [k.key.get_secret_value() for k in keys]
        if len(set(values)) < len(values):
            raise ValueError("API_KEYS gives the same key to more than one tenant")
        return keys

    @model_validator(mode="after")
    def _admin_keys_are_not_tenant_keys(self) -> Settings:
        admin = {k.get_secret_value() for k in self.admin_api_keys}
        if admin & set(self.tenants_by_key):
            raise ValueError("ADMIN_API_KEYS and API_KEYS share a key: keep them apart")
        return self

    @field_validator("gemini_model", "openrouter_model")
    @classmethod
    def _plain_model_name(cls, name: str) -> str:
        if not is_model_name(name):
            raise ValueError("must be a model id such as gemini-2.5-flash or openai/gpt-4o-mini")
        return name

    @cached_property
    def models(self) -> ModelCatalog:
        """The models requests may name: primary, fallback, aliases."""
        return ModelCatalog(self.gemini_model, self.openrouter_model, self.model_aliases)

    @model_validator(mode="after")
    def _rotation_has_an_end(self) -> Settings:
        previous = self.webhook_signing_secret_previous
        if (previous is None) != (self.webhook_signing_secret_previous_expires_at is None):
            raise ValueError(
                "set WEBHOOK_SIGNING_SECRET_PREVIOUS and "
                "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT together (a rotation needs an end)"
            )
        if previous is not None and previous == self.webhook_signing_secret:
            raise ValueError("WEBHOOK_SIGNING_SECRET_PREVIOUS equals WEBHOOK_SIGNING_SECRET")
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets_on_lambda(self) -> Settings:
        """On Lambda the secret comes from a template: refuse to serve with its placeholders."""
        if not running_on_lambda():
            return self
        found = [name for name, value in self._secret_values() if is_placeholder(value)]
        if found:
            raise ValueError(
                f"{', '.join(found)}: still the secret template's placeholder; put the real "
                "value in the Secrets Manager secret, or leave the key out (docs/DEPLOYMENT.md, "
                "step 2)"
            )
        return self

    def _secret_values(self) -> list[tuple[str, str]]:
        named = [
            ("GEMINI_API_KEY", self.gemini_api_key),
            ("OPENROUTER_API_KEY", self.openrouter_api_key),
            ("WEBHOOK_SIGNING_SECRET", self.webhook_signing_secret),
            ("WEBHOOK_SIGNING_SECRET_PREVIOUS", self.webhook_signing_secret_previous),
            ("KEY_HASH_SECRET", self.key_hash_secret),
        ]
        values = [(name, secret.get_secret_value()) for name, secret in named if secret is not None]
        keys = [(f"API_KEYS ({k.tenant})", k.key.get_secret_value()) for k in self.api_keys]
        admin = [("ADMIN_API_KEYS", k.get_secret_value()) for k in self.admin_api_keys]
        return values + keys + admin

    @field_validator("auth_failure_limit")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        try:
            amount = parse(value).amount
        except ValueError:
            amount = 0
        if amount < 1:
            raise ValueError(
                "must look like '10/minute': a count of 1 or more per second|minute|hour"
            )
        return value

    @cached_property
    def tenants_by_key(self) -> dict[str, str]:
        return {k.key.get_secret_value(): k.tenant for k in self.api_keys}

    @property
    def retry_delays_s(self) -> list[float]:
        return list(self.webhook_retry_schedule)

    @property
    def job_retention(self) -> timedelta | None:
        """JOB_RETENTION_DAYS as a period; None: keep everything."""
        return retention_of(self.job_retention_days)

    @property
    def job_timeout_s(self) -> float:
        """Longest a job may run: primary and fallback each get one LLM timeout."""
        return 2 * self.llm_timeout_s + 5

    @property
    def on_lambda(self) -> bool:
        return running_on_lambda()

    @property
    def resolved_store(self) -> str:
        return self.store_backend or ("dynamodb" if self.on_lambda else "sqlite")

    @property
    def resolved_queue(self) -> str:
        if self.queue_backend:
            return self.queue_backend
        if self.on_lambda:
            return "sqs"
        return "arq" if self.redis_url else "inprocess"

    @property
    def resolved_files(self) -> str:
        """A Lambda container's disk is its own: there, files live in S3 or nowhere."""
        if self.files_backend:
            return self.files_backend
        if self.files_bucket:
            return "s3"
        return "none" if self.on_lambda else "local"

    @property
    def resolved_cache(self) -> str:
        if self.cache_backend:
            return self.cache_backend
        if self.redis_url:
            return "redis"
        return "dynamodb" if self.resolved_store == "dynamodb" else "memory"
