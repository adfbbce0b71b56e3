"""ProviderQuota adapters (shared/ports.py): `memory` (one process), `redis` (every worker with
REDIS_URL), `dynamodb` (Lambda containers). `Adapters.provider_quota` picks one as it picks the
rate window."""
